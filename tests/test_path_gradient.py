"""The path-derivative gradient ("sticking the landing", path_gradient.py): the score along the
sample path against differences of log_prob, the estimator against the full gradient minus the
score term, its mean against the full gradient's, both engines, and fit with it."""

import numpy as np
import pytest

import planarflow as pf
from conftest import characteristic_params
from planarflow import base, fused, path_gradient, reference
from planarflow.library.validation import CheckedTarget


def flow_with_base(K, d, rng, u_scale=0.5):
    params = pf.init_params(K, d, rng=rng, u_scale=u_scale, base=True)
    params["mu"] = rng.standard_normal(d)
    params["log_sigma"] = 0.4 * rng.standard_normal(d)
    params["lower"] = np.tril(0.4 * rng.standard_normal((d, d)), -1)
    return params


@pytest.mark.parametrize("K,d,base_", [(1, 1, False), (3, 2, False), (8, 5, False), (4, 3, True)])
def test_the_score_along_the_path_is_the_gradient_of_log_prob(K, d, base_):
    """g = ∇_x log q(x) at the flow's outputs, by the forward recursion, against central
    differences of log_prob (which inverts the flow) — to 1e-8."""
    rng = np.random.default_rng(K + d)
    params = flow_with_base(K, d, rng) if base_ else pf.init_params(K, d, rng=rng, u_scale=0.8)
    z0 = rng.standard_normal((6, d))
    x = (base if base_ else reference).flow_forward(params, z0)[0]
    g = path_gradient.path_score(params, z0)
    for n in range(z0.shape[0]):
        numeric = pf.numerical_gradient(lambda y: float(pf.log_prob(params, y[None])[0]), x[n].copy())
        assert pf.rel_error(g[n], numeric) <= 1e-8


@pytest.mark.parametrize("base_", [False, True])
def test_the_path_gradient_is_the_full_gradient_minus_the_score_term(base_):
    """The score term (1/N) Σₙ ∂log q_θ(xₙ)/∂θ at the batch's points held fixed, by central
    differences of log_prob over θ — computed independently of both estimators."""
    rng = np.random.default_rng(3)
    d = 2
    params = flow_with_base(3, d, rng) if base_ else pf.init_params(3, d, rng=rng, u_scale=0.8)
    target = pf.get_target("U1")
    z0 = rng.standard_normal((64, d))
    _, full = pf.reverse_kl(params, z0, target)
    _, path = pf.reverse_kl(params, z0, target, gradient="path")
    x = (base if base_ else reference).flow_forward(params, z0)[0]
    for key in params:
        if key == "lower":
            continue                                   # (only its strictly lower part: checked below)

        def mean_log_q(value, key=key):
            return float(np.mean(pf.log_prob(dict(params, **{key: value}), x)))

        score = pf.numerical_gradient(mean_log_q, params[key].copy())
        assert pf.rel_error(path[key], full[key] - score) <= 1e-6, key
    if base_:
        lower = params["lower"].copy()
        score = np.zeros_like(lower)
        for i, j in zip(*np.tril_indices(d, -1)):
            def f(v, i=i, j=j):
                m = lower.copy()
                m[i, j] = v[0]
                return float(np.mean(pf.log_prob(dict(params, lower=m), x)))
            score[i, j] = pf.numerical_gradient(f, np.array([lower[i, j]]))[0]
        assert pf.rel_error(path["lower"], full["lower"] - score) <= 1e-6


def test_both_estimators_have_the_same_mean():
    """Unbiasedness, statistically: over 400 batches the per-batch difference path − full (minus
    the score term) has mean 0 in every component, within 4.5 of its standard errors — a false
    alarm less than once in 10⁴ runs for these 15 components (the seed is fixed: it passes or not
    the same way every time)."""
    rng = np.random.default_rng(11)
    params = pf.init_params(3, 2, rng=1, u_scale=0.8)
    target = CheckedTarget(pf.get_target("U1"), 2)
    diffs = []
    for _ in range(400):
        z0 = rng.standard_normal((64, 2))
        _, full = reference.reverse_kl(params, z0, target)
        _, path = path_gradient.reverse_kl(params, z0, target)
        diffs.append(np.concatenate([(path[k] - full[k]).ravel() for k in "uwb"]))
    diffs = np.array(diffs)
    z = diffs.mean(axis=0) / (diffs.std(axis=0, ddof=1) / np.sqrt(len(diffs)))
    assert np.all(np.abs(z) < 4.5), z
    assert np.max(np.abs(diffs)) > 1e-3                 # the score term is not zero batch by batch


def test_at_the_exact_solution_the_path_gradient_vanishes_and_the_full_one_does_not():
    """q = p (a base equal to the Gaussian target, planar layers at the identity): every batch's
    path gradient is 0 to rounding, while the full gradient still carries the score's noise."""
    mu, sd = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    target = pf.Gaussian(mu, sd)
    params = dict(pf.init_params(4, 3, rng=0, u_scale=0.0, base=True), mu=mu, log_sigma=np.log(sd))
    z0 = np.random.default_rng(1).standard_normal((256, 3))
    _, full = pf.reverse_kl(params, z0, target)
    _, path = pf.reverse_kl(params, z0, target, gradient="path")
    assert max(np.max(np.abs(g)) for g in path.values()) < 1e-12
    assert max(np.max(np.abs(g)) for g in full.values()) > 1e-3


@pytest.mark.parametrize("K,d,P", [(1, 1, 1), (5, 2, 1), (32, 2, 1), (27, 3, 2), (8, 5, 3)])
def test_the_fused_engine_computes_the_same_path_gradient(K, d, P):
    rng = np.random.default_rng(K * 7 + d)
    members = [characteristic_params(K, d, rng) for _ in range(P)]
    stacked = {k: np.stack([m[k] for m in members]) for k in "uwb"}
    z0 = rng.standard_normal((P, 300, d))
    target = CheckedTarget(pf.get_target("U3") if d == 2 else pf.Gaussian(np.zeros(d), np.ones(d)), d)
    losses, grads = fused.reverse_kl_members(stacked, z0, target, 0.4, gradient="path")
    for p in range(P):
        loss, g = path_gradient.reverse_kl(members[p], z0[p], target, 0.4)
        assert losses[p] == pytest.approx(loss, rel=1e-13, abs=1e-13)
        for key in g:
            assert pf.rel_error(grads[key][p], g[key]) <= 1e-12, key


def test_fit_with_the_path_gradient_agrees_across_engines_populations_and_a_resume(tmp_path):
    target = pf.get_target("U2")
    kw = dict(lr=2e-2, lr_final=1e-3, anneal_steps=40, progress=False, gradient="path")
    ref, _ = pf.fit(target, 6, 120, 128, rng=4, **kw)
    fast, _ = pf.fit(target, 6, 120, 128, rng=4, engine="fused", **kw)
    for k in "uwb":
        assert np.max(np.abs(ref[k] - fast[k])) <= 1e-8 * np.max(np.abs(ref[k]))
    pop, history = pf.fit(target, 3, 30, 32, rng=0, population=3, engine="fused", **kw)
    assert pop["u"].shape == (3, 3, 2) and history["loss"].shape == (30, 3)
    ckpt = tmp_path / "run.ckpt"

    def stop_at_60(t, loss, beta):
        if t + 1 == 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pf.fit(target, 6, 120, 128, rng=4, checkpoint=ckpt, checkpoint_every=30, callback=stop_at_60, **kw)
    resumed, _ = pf.fit(target, 6, 120, 128, resume=ckpt, **kw)
    for k in "uwb":
        np.testing.assert_array_equal(resumed[k], ref[k])
    with pytest.raises(ValueError, match="gradient"):
        pf.fit(target, 6, 120, 128, resume=ckpt, **dict(kw, gradient="full"))
    with pytest.raises(ValueError, match="gradient"):
        pf.fit(target, 2, 5, 8, gradient="score")
