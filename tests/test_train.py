"""fit: annealing, reproducibility, history, and reaching the floor −log Z on a known target."""

import numpy as np
import pytest

from planarflow import fit, get_target, reverse_kl
from planarflow import Gaussian
from planarflow.reference import beta_schedule, lr_schedule


def test_beta_schedule_follows_the_formula():
    assert beta_schedule(0, 100) == pytest.approx(0.01)
    assert beta_schedule(50, 100) == pytest.approx(0.51)
    assert beta_schedule(99, 100) == 1.0
    assert beta_schedule(5000, 100) == 1.0
    assert beta_schedule(0, 0) == 1.0 and beta_schedule(0, None) == 1.0


def test_lr_schedule_is_a_cosine_from_lr_to_lr_final():
    assert lr_schedule(0, 101, 1e-2, 1e-4) == pytest.approx(1e-2)
    assert lr_schedule(50, 101, 1e-2, 1e-4) == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert lr_schedule(100, 101, 1e-2, 1e-4) == pytest.approx(1e-4)
    assert lr_schedule(30, 101, 1e-2, None) == 1e-2


def test_history_records_every_step_and_the_annealing():
    _, history = fit(get_target("U2"), K=2, steps=40, batch_size=16, anneal_steps=20, rng=0, progress=False)
    assert set(history) >= {"loss", "beta", "lr"}
    assert all(len(history[k]) == 40 for k in ("loss", "beta", "lr"))
    np.testing.assert_allclose(history["beta"][:3], [0.01, 0.06, 0.11])
    assert history["beta"][-1] == 1.0 and np.all(np.isfinite(history["loss"]))


def test_same_seed_same_run_other_seed_other_run():
    run = lambda seed: fit(get_target("U1"), K=3, steps=30, batch_size=32, rng=seed, progress=False)[0]
    a, b, c = run(5), run(5), run(6)
    for k in "uwb":
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["u"], c["u"])


def test_fit_with_a_generator_draws_from_it_and_nowhere_else():
    rng = np.random.default_rng(3)
    state = np.random.get_state()
    fit(get_target("U1"), K=2, steps=5, batch_size=8, rng=rng, progress=False)
    assert np.array_equal(np.random.get_state()[1], state[1])       # no global seeding or drawing
    assert rng.bit_generator.state != np.random.default_rng(3).bit_generator.state


def test_a_short_fit_reaches_the_floor_minus_log_z_of_a_gaussian():
    """A Gaussian target has Z in closed form; the loss is bounded below by −log Z and a
    4-layer flow gets within 0.01 nats of it (KL < 0.01) in 1500 steps."""
    target = Gaussian([1.0, -0.5], [0.7, 1.3])
    params, _ = fit(target, K=4, steps=1500, batch_size=256, lr=0.02, lr_final=1e-3, rng=0, progress=False)
    z0 = np.random.default_rng(1).standard_normal((200_000, 2))
    loss, _ = reverse_kl(params, z0, target)
    floor = -target.log_z
    assert loss > floor - 0.003          # the floor holds (up to Monte-Carlo error, ~6e-4 here)
    assert loss < floor + 0.01           # and the fit is close to it


def test_callback_sees_every_step():
    seen = []
    fit(get_target("U1"), K=1, steps=7, batch_size=4, rng=0, progress=False,
        callback=lambda t, loss, beta: seen.append(t))
    assert seen == list(range(7))


def test_progress_false_is_silent(capsys):
    fit(get_target("U1"), K=1, steps=5, batch_size=4, rng=0, progress=False)
    assert capsys.readouterr() == ("", "")


def test_user_target_in_3d_can_be_fitted():
    class Quadratic:
        dim = 3

        def energy(self, z):
            return 0.5 * np.sum((z / [1.0, 2.0, 0.5]) ** 2, axis=1)

        def grad(self, z):
            return z / np.array([1.0, 4.0, 0.25])

    params, history = fit(Quadratic(), K=3, steps=300, batch_size=128, rng=0, progress=False, start="standard")
    assert params["u"].shape == (3, 3) and set(params) == {"u", "w", "b"}
    assert history["loss"][-50:].mean() < history["loss"][:50].mean()
    # from the mode (the default for a target of one's own) the flow starts at the Laplace
    # approximation, exact here: once β has climbed to 1 (200 steps, the library's choice from such
    # a start) the loss sits at −log Z = −(3/2)·log 2π (σ₁σ₂σ₃ = 1), within its noise (the per-step
    # standard deviation is below 0.02 at batch 128)
    params, history = fit(Quadratic(), K=3, steps=300, batch_size=128, rng=0, progress=False)
    assert set(params) == {"u", "w", "b", "mu", "log_sigma", "lower"}
    assert np.all(history["beta"][:198] < 1) and np.all(history["beta"][198:] == 1)   # 0.01 + τ/200
    assert abs(history["loss"][history["beta"] == 1].mean() + 1.5 * np.log(2 * np.pi)) < 0.01


def test_fit_with_a_population_returns_every_member_and_its_history():
    params, history = fit(get_target("U3"), K=2, steps=50, batch_size=32, rng=0, progress=False,
                          population=5)
    assert params["u"].shape == (5, 2, 2) and params["b"].shape == (5, 2)
    assert history["loss"].shape == (50, 5)
    assert len({float(x) for x in params["b"][:, 0]}) == 5          # five different flows
    with pytest.raises(ValueError, match="population"):
        fit(get_target("U3"), K=2, steps=5, batch_size=8, population=2, params=params)


def test_a_population_continues_from_given_members():
    """params with a leading member axis start each member where it is (the demo's recipe
    continues the best members of a first population): one step moves each by at most ~lr."""
    target = get_target("U3")
    start, _ = fit(target, K=2, steps=20, batch_size=32, rng=0, progress=False, population=4)
    keep = {k: v[[2, 0]] for k, v in start.items()}
    after, history = fit(target, K=2, steps=1, batch_size=32, lr=1e-3, rng=1, progress=False,
                         population=2, params=keep)
    assert history["loss"].shape == (1, 2)
    for k in ("u", "w", "b"):
        assert np.max(np.abs(after[k] - keep[k])) <= 1.01e-3          # Adam's first step: ≤ lr
        assert not np.shares_memory(after[k], keep[k])                # a copy is trained
    bad = {k: v.copy() for k, v in keep.items()}
    bad["w"][1, 0] = np.nan
    with pytest.raises(ValueError, match="params member 1"):
        fit(target, K=2, steps=1, batch_size=8, population=2, params=bad, progress=False)
    with pytest.raises(ValueError, match="params member 0: expected K = 3"):
        fit(target, K=3, steps=1, batch_size=8, population=2, params=keep, progress=False)
    with pytest.raises(ValueError, match=r"params\['u'\]: with population = 3"):
        fit(target, K=2, steps=1, batch_size=8, population=3, params=keep, progress=False)
    with pytest.raises(ValueError, match="exactly the keys"):
        fit(target, K=2, steps=1, batch_size=8, population=2, params={"u": keep["u"]}, progress=False)
    with pytest.raises(TypeError, match="params"):
        fit(target, K=2, steps=1, batch_size=8, population=2, params=[keep], progress=False)
