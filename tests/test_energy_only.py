"""An energy without a gradient in higher dimension: the gradient around the Laplace quadratic
along random directions — unbiased, exact where the posterior is the quadratic, the same on both
engines and across a resume — and when fit uses it."""

import warnings

import numpy as np
import pytest

import planarflow as pf
from planarflow.lab import posteriors
from planarflow.library import differences, training
from planarflow.library.differences import directional_gradient


def quartic(y):
    """Ũ(y) = ½‖y‖² + r(y), r = 0.1·Σ yᵢ⁴ + 0.3·y₀y₁: a remainder with a known gradient."""
    r = 0.1 * (y ** 4).sum(axis=1) + 0.3 * y[:, 0] * y[:, 1]
    g = 0.4 * y ** 3
    g[:, 0] += 0.3 * y[:, 1]
    g[:, 1] += 0.3 * y[:, 0]
    return 0.5 * (y * y).sum(axis=1) + r, y + g


def signs(rng, shape):
    return rng.integers(0, 2, size=shape) * 2.0 - 1.0


def test_the_directional_estimate_is_exact_where_the_energy_is_the_quadratic():
    y = np.random.default_rng(0).standard_normal((50, 12))
    U, g = directional_gradient(lambda p: 0.5 * (p * p).sum(axis=1) + 7.0, y, signs(np.random.default_rng(1), (1, 50, 12)))
    np.testing.assert_allclose(U, 0.5 * (y * y).sum(axis=1) + 7.0, rtol=1e-15)
    np.testing.assert_allclose(g, y, rtol=0, atol=1e-6)         # the forward difference's own error


def test_the_directional_estimate_is_unbiased_for_a_remainder():
    """Averaged over 20 000 draws of the directions at five points, the estimate is the true
    gradient within five standard errors of the average (each estimate's spread over √20 000)."""
    y = np.random.default_rng(2).standard_normal((5, 6))
    _, truth = quartic(y)
    draws = np.stack([directional_gradient(lambda p: quartic(p)[0], y, signs(np.random.default_rng(s), (1, 5, 6)))[1]
                      for s in range(20_000)])
    mean, se = draws.mean(axis=0), draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(mean - truth) < 5 * se + 1e-6), np.max(np.abs(mean - truth) / (se + 1e-12))
    assert np.all(se > 0)                                        # (a remainder: the estimate is noisy)


def test_more_directions_average_their_estimates():
    y = np.random.default_rng(3).standard_normal((4, 6))
    V = signs(np.random.default_rng(4), (3, 4, 6))
    _, g3 = directional_gradient(lambda p: quartic(p)[0], y, V)
    ones = [directional_gradient(lambda p: quartic(p)[0], y, V[k:k + 1])[1] for k in range(3)]
    np.testing.assert_allclose(g3, np.mean(ones, axis=0), rtol=1e-12, atol=1e-12)


def counting(monkeypatch):
    calls = []
    original = differences.directional_gradient

    def spy(*a, **k):
        calls.append(1)
        return original(*a, **k)
    import planarflow.library.mode as mode
    monkeypatch.setattr(mode, "directional_gradient", spy)
    return calls


def test_fit_uses_directions_for_an_energy_alone_from_d_16_on_and_coordinates_below(monkeypatch):
    calls = counting(monkeypatch)
    assert training.DIRECTIONS_FROM == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.NumericalGradientWarning)
        target, _, _ = posteriors.wide_regression(p=14, energy_only=True)   # d = 16
        pf.fit(target, 2, 5, 16, rng=0, progress=False)
        assert len(calls) == 5
        target, _, _ = posteriors.eight_schools(energy_only=True)            # d = 10
        pf.fit(target, 2, 5, 16, rng=0, progress=False)
        assert len(calls) == 5
        pf.fit(target, 2, 5, 16, rng=0, progress=False, differences="directions")
        assert len(calls) == 10
        target, _, _ = posteriors.eight_schools()                           # with its gradient
        pf.fit(target, 2, 5, 16, rng=0, progress=False)
    assert len(calls) == 10


@pytest.mark.parametrize("kw, words", [({"differences": "random"}, "expected one of"),
                                       ({"differences": None}, "expected one of"),
                                       ({"differences": "directions", "start": "standard"}, "Laplace frame")])
def test_bad_differences_are_refused_by_name(kw, words):
    target, _, _ = posteriors.eight_schools(energy_only=True)
    with pytest.raises(ValueError, match="differences: .*" + words):
        pf.fit(target, 2, 5, 16, rng=0, progress=False, **kw)


def test_directions_for_a_target_with_a_gradient_are_refused():
    target, _, _ = posteriors.eight_schools()
    with pytest.raises(ValueError, match="differences: the target has its own gradient"):
        pf.fit(target, 2, 5, 16, rng=0, progress=False, differences="directions")


def test_both_engines_and_a_population_see_the_same_directions():
    """The same directions, so the same run — to the rounding a difference quotient amplifies:
    the engines' points differ by ~1e-16 relative, their energies by ~1e-15, and (U(y + hv) −
    U(y))/h with h = 1.5e-8 carries ~1e-7 of it; other directions would differ by ~1e-2 in a step."""
    target, _, _ = posteriors.eight_schools(energy_only=True)
    kw = dict(K=3, steps=40, batch_size=32, rng=0, progress=False, stop="steps")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.NumericalGradientWarning)
        ref, h_ref = pf.fit(target, engine="reference", **kw)
        fus, h_fus = pf.fit(target, engine="fused", **kw)
        pr, _ = pf.fit(target, engine="reference", population=2, **kw)
        pf_, _ = pf.fit(target, engine="fused", population=2, **kw)
    assert h_ref["loss"][0] == pytest.approx(h_fus["loss"][0], abs=1e-12)
    np.testing.assert_allclose(h_ref["loss"], h_fus["loss"], rtol=0, atol=1e-6)
    for k in ref:
        np.testing.assert_allclose(ref[k], fus[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(pr[k], pf_[k], rtol=0, atol=1e-6)


def test_a_resumed_run_draws_the_same_directions(tmp_path):
    target, _, _ = posteriors.eight_schools(energy_only=True)
    kw = dict(K=2, steps=300, batch_size=32, progress=False, stop="steps", checkpoint_every=100)
    path = str(tmp_path / "run.npz")

    def stop_at(t, loss, beta):
        if t + 1 == 250:
            raise KeyboardInterrupt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.NumericalGradientWarning)
        whole, h_whole = pf.fit(target, rng=0, **kw)
        with pytest.raises(KeyboardInterrupt):
            pf.fit(target, rng=0, checkpoint=path, callback=stop_at, **kw)
        again, h_again = pf.fit(target, resume=path, **kw)
    np.testing.assert_array_equal(h_whole["loss"], h_again["loss"])
    for k in whole:
        np.testing.assert_array_equal(whole[k], again[k])


def test_directions_reach_the_same_answer_on_a_near_gaussian_posterior():
    """The 12-coefficient regression by its energy alone: right (means within 0.1 sd, sds within
    10%) along directions, as with its gradient."""
    target, mean, sd = posteriors.wide_regression(energy_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.NumericalGradientWarning)
        params, _ = pf.fit(target, 16, 3000, 512, rng=0, progress=False, differences="directions")
    post = pf.posterior(params, target, 20_000, rng=1)
    dm, ds = posteriors.judge(post, mean, sd)
    assert dm < 0.1 and ds < 0.1 and post.reliable, (dm, ds, post.k_hat)
