"""Every public entry point turns bad input into a ValueError/TypeError that names the argument."""

import numpy as np
import pytest

import planarflow as pf
from planarflow import Gaussian

GOOD = pf.init_params(3, 2, rng=0)
Z = np.zeros((4, 2))
T = pf.get_target("U1")


def bad_params():
    """(description, params) pairs, each wrong in one way."""
    nan_u = {k: v.copy() for k, v in GOOD.items()}
    nan_u["u"][0, 0] = np.nan
    inf_b = {k: v.copy() for k, v in GOOD.items()}
    inf_b["b"][1] = np.inf
    zero_w = {k: v.copy() for k, v in GOOD.items()}
    zero_w["w"][2] = 0.0
    singular = {k: v.copy() for k, v in GOOD.items()}
    singular["u"][0] = -800.0 * singular["w"][0] / np.sum(singular["w"][0] ** 2)
    return [
        ("missing key", {"u": GOOD["u"], "w": GOOD["w"]}),
        ("extra key", dict(GOOD, c=np.zeros(3))),
        ("w wrong shape", dict(GOOD, w=np.zeros((3, 3)) + 1)),
        ("b wrong shape", dict(GOOD, b=np.zeros((3, 1)))),
        ("u 1-D", dict(GOOD, u=np.zeros(3))),
        ("string", dict(GOOD, u="abc")),
        ("complex", dict(GOOD, u=GOOD["u"] + 1j)),
        ("object", dict(GOOD, b=np.array([None, None, None]))),
        ("NaN", nan_u),
        ("inf", inf_b),
        ("zero w row", zero_w),
        ("wᵀu below −730", singular),
        ("not a dict", [GOOD["u"], GOOD["w"], GOOD["b"]]),
    ]


CALLS = {
    "flow_forward": lambda p: pf.flow_forward(p, Z),
    "sample": lambda p: pf.sample(p, 5, rng=0),
    "reverse_kl": lambda p: pf.reverse_kl(p, Z, T),
    "inverse": lambda p: pf.inverse(p, Z),
    "log_prob": lambda p: pf.log_prob(p, Z),
    "kl_divergence": lambda p: pf.kl_divergence(p, T, 10, rng=0),
    "importance_log_z": lambda p: pf.importance_log_z(p, T, 10, rng=0),
    "save": lambda p: pf.save("/tmp/_planarflow_never_written.npz", p),
    "fit": lambda p: pf.fit(T, 3, 1, 4, params=p, progress=False),
}


@pytest.mark.parametrize("fn", sorted(CALLS))
@pytest.mark.parametrize("case", range(len(bad_params())))
def test_bad_parameters_are_refused_by_name(fn, case):
    what, params = bad_params()[case]
    with pytest.raises((ValueError, TypeError), match=r"params|\.npz") as info:
        CALLS[fn](params)
    assert "expected" in str(info.value), (what, str(info.value))


@pytest.mark.parametrize("z, exc", [
    (np.zeros((4, 3)), ValueError), (np.zeros(2), ValueError), (np.zeros((0, 2)), ValueError),
    (np.array([[np.nan, 0.0]]), ValueError), (np.array([[np.inf, 0.0]]), ValueError),
    ("points", TypeError), (None, TypeError), ([[1, 2], [3]], TypeError),
])
def test_bad_points_are_refused_by_name(z, exc):
    for fn, name in [(lambda: pf.flow_forward(GOOD, z), "z0"), (lambda: pf.reverse_kl(GOOD, z, T), "z0"),
                     (lambda: pf.inverse(GOOD, z), "y"), (lambda: pf.log_prob(GOOD, z), "y"),
                     (lambda: T.energy(z), "z"), (lambda: T.grad(z), "z")]:
        with pytest.raises(exc, match=name):
            fn()


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (3.0, TypeError),
                                        (True, TypeError), ("3", TypeError), (None, TypeError)])
def test_sizes_must_be_positive_integers(value, exc):
    with pytest.raises(exc, match="K"):
        pf.init_params(value)
    with pytest.raises(exc, match="dim"):
        pf.init_params(2, dim=value)
    with pytest.raises(exc, match="n"):
        pf.sample(GOOD, value)
    with pytest.raises(exc, match="steps"):
        pf.fit(T, 2, value, 8, progress=False)
    with pytest.raises(exc, match="batch_size"):
        pf.fit(T, 2, 5, value, progress=False)
    with pytest.raises(exc, match="K"):
        pf.fit(T, value, 5, 8, progress=False)


@pytest.mark.parametrize("lr", [0.0, -1e-3, np.nan, np.inf, "0.1", None])
def test_rates_must_be_positive_and_finite(lr):
    with pytest.raises((ValueError, TypeError), match="lr"):
        pf.Adam(lr=lr)
    with pytest.raises((ValueError, TypeError), match="lr"):
        pf.fit(T, 2, 5, 8, lr=lr, progress=False)


@pytest.mark.parametrize("beta", [0.0, -0.5, 1.5, np.nan, "1"])
def test_beta_must_lie_in_zero_one(beta):
    with pytest.raises((ValueError, TypeError), match="beta"):
        pf.reverse_kl(GOOD, Z, T, beta=beta)


def test_targets_must_have_a_callable_energy():
    class NotCallable:
        dim = 2
        energy = 3

    class GradNotCallable:
        dim = 2
        grad = 1

        def energy(self, z):
            return np.zeros(len(z))

    for fn in [lambda t: pf.reverse_kl(GOOD, Z, t), lambda t: pf.fit(t, 2, 5, 8, progress=False),
               lambda t: pf.kl_divergence(GOOD, t, 10, log_z=0.0), lambda t: pf.importance_log_z(GOOD, t, 10),
               lambda t: pf.log_partition(t)]:
        for bad in [NotCallable(), GradNotCallable(), object(), None, "U1"]:
            with pytest.raises(TypeError, match="target"):
                fn(bad)


def test_a_target_without_dim_is_refused_by_fit_never_given_a_2d_flow():
    class NoDim:
        def energy(self, z):
            return 0.5 * (z * z).sum(axis=1)

        def grad(self, z):
            return z

    with pytest.raises(ValueError, match="dim"):
        pf.fit(NoDim(), 2, 5, 8, progress=False)
    params, _ = pf.fit(NoDim(), 2, 5, 8, progress=False, dim=5, rng=0)    # stated: fine
    assert params["u"].shape == (2, 5)


def test_a_target_returning_wrong_shapes_is_reported():
    class Wrong:
        dim = 2

        def energy(self, z):
            return np.zeros((len(z), 1))

        def grad(self, z):
            return np.zeros_like(z)

    with pytest.raises(ValueError, match="target"):
        pf.reverse_kl(GOOD, Z, Wrong())


def test_unknown_target_names_and_bad_boxes():
    for name in ["U9", "u1", "", None, 1]:
        with pytest.raises(ValueError, match="name"):
            pf.get_target(name)
    for box in [0.0, -2.0, np.nan, "4"]:
        with pytest.raises((ValueError, TypeError), match="box"):
            pf.get_target("U1", box=box)


def test_rng_must_be_a_seed_or_generator():
    with pytest.raises(TypeError, match="rng"):
        pf.init_params(2, rng="seed")
    with pytest.raises(TypeError, match="rng"):
        pf.sample(GOOD, 3, rng=1.5)


def test_adam_step_checks_its_arrays():
    adam = pf.Adam()
    params = {"u": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"grads\['u'\]"):
        adam.step(params, {"u": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"grads\['u'\]"):
        adam.step(params, {"u": np.full((2, 2), np.nan)})
    with pytest.raises(TypeError, match=r"params\['u'\]"):
        adam.step({"u": [[0.0, 0.0]]}, {"u": np.zeros((1, 2))})


def test_u_hat_and_planar_forward_check_their_arguments():
    with pytest.raises(ValueError, match="w"):
        pf.u_hat(np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="w"):
        pf.u_hat(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="u"):
        pf.planar_forward(Z, np.ones(3), np.ones(2), 0.0)
    with pytest.raises((ValueError, TypeError), match="b"):
        pf.planar_forward(Z, np.ones(2), np.ones(2), np.nan)
    with pytest.raises(TypeError, match="b"):
        pf.planar_forward(Z, np.ones(2), np.ones(2), "0")


def test_diagnostics_check_their_arguments():
    with pytest.raises(ValueError, match="spacing"):
        pf.log_partition(T, spacing=0.0)
    with pytest.raises(ValueError, match="limit"):
        pf.log_partition(T, limit=-1.0)
    with pytest.raises((ValueError, TypeError), match="n"):
        pf.kl_divergence(GOOD, T, 1)
    with pytest.raises(ValueError, match="log_z"):
        pf.kl_divergence(GOOD, T, 10, log_z=np.nan)
    with pytest.raises(ValueError, match="dimension"):
        pf.kl_divergence(GOOD, Gaussian([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), 10)
