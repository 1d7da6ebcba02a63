"""A model as a probabilistic programming language hands it over: the few batch shapes a compiled
energy sees, the posterior in the model's own quantities (transform), and no stray warnings from
a target whose mode search walks into a funnel's neck."""

import warnings
from collections import Counter

import numpy as np
import pytest

import planarflow as pf
from planarflow.lab import posteriors
from planarflow.library.validation import BLOCK, CheckedTarget


class Recording:
    """A target that notes the batch size of every call of its function."""

    def __init__(self, target, gradient=True):
        self.inner, self.dim, self.shapes = target, target.dim, Counter()
        if gradient:
            self.energy_and_grad = self._both

    def energy(self, z):
        self.shapes[z.shape] += 1
        return self.inner.energy(z)

    def _both(self, z):
        self.shapes[z.shape] += 1
        return self.inner.energy_and_grad(z)


@pytest.mark.parametrize("gradient", [True, False])
def test_a_fit_calls_the_users_function_with_two_batch_shapes_and_the_diagnostics_with_one_more(gradient):
    target, _, _ = posteriors.eight_schools()
    d = target.dim
    rec = Recording(target, gradient)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.NumericalGradientWarning)
        warnings.simplefilter("ignore", pf.TailWarning)                  # (300 steps: a rough flow)
        params, _ = pf.fit(rec, 4, 300, 256, rng=0, progress=False, stop="steps")
        assert set(rec.shapes) == {(2 * d + 1, d), (256, d)}, rec.shapes
        rec.shapes.clear()
        pf.posterior(params, rec, 3000, rng=1)
        if gradient:
            pf.check_target(rec, rng=0)
    assert set(rec.shapes) <= {(2 * d + 1, d), (BLOCK, d)}, rec.shapes


def test_padding_keeps_only_the_real_points_values():
    target, _, _ = posteriors.eight_schools()
    z = np.random.default_rng(0).standard_normal((1300, 10))
    for n in (1, 5, 21, 22, 512, 513, 1300):
        checked = CheckedTarget(target, 10)
        U, g = checked.energy_and_grad(z[:n])
        U0, g0 = target.energy_and_grad(z[:n])
        assert U.shape == (n,) and g.shape == (n, 10)
        np.testing.assert_array_equal(U, U0)
        np.testing.assert_array_equal(g, g0)


def test_a_batch_that_returns_the_wrong_shape_is_named_with_the_shape_it_was_given():
    bad = pf.Target(3, lambda z: np.zeros(z.shape[0] + 1))
    with pytest.raises(ValueError, match=r"expected shape \(7,\) for points of shape \(7, 3\)"):
        CheckedTarget(bad, 3).energy(np.zeros((2, 3)))


def test_a_non_finite_value_is_counted_among_the_real_points_only():
    def energy(z):
        return np.where(z[:, 0] > 0, np.inf, 0.5 * (z * z).sum(axis=1))
    checked = CheckedTarget(pf.Target(2, energy), 2, finite=False)
    z = np.array([[1.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    checked.energy(z[:1])
    assert checked.nonfinite[1:3] == (1, 1)
    checked.energy(np.concatenate([z[1:], z[:1]]))          # padded with copies of the last (infinite) point
    assert checked.nonfinite[1:3] == (1, 3)


# --- the model's own quantities ------------------------------------------------------------------

def fitted_gaussian():
    target = pf.Gaussian(mean=[0.5, -1.0], std=[0.3, 0.8])
    params, _ = pf.fit(target, 2, 1500, 256, rng=0, progress=False)
    return target, params


def test_a_transform_gives_the_weighted_estimates_of_its_values_under_the_same_weights():
    target, params = fitted_gaussian()
    plain = pf.posterior(params, target, 20_000, rng=1)
    post = pf.posterior(params, target, 20_000, rng=1, transform=lambda z: np.exp(z), names=["s1", "s2"])
    np.testing.assert_array_equal(post.z, plain.samples)
    np.testing.assert_array_equal(post.weights, plain.weights)
    values = np.exp(plain.samples)
    np.testing.assert_allclose(post.mean, plain.weights @ values, rtol=1e-14)
    np.testing.assert_allclose(post.sd, np.sqrt(plain.weights @ (values - post.mean) ** 2), rtol=1e-12)
    # E[e^z] for z ~ N(μ, σ²) is e^{μ + σ²/2}: the log-normal's mean, within four Monte-Carlo errors
    truth = np.exp(np.array([0.5, -1.0]) + np.array([0.3, 0.8]) ** 2 / 2)
    assert np.all(np.abs(post.mean - truth) < 4 * post.mcse + 1e-3)
    np.testing.assert_allclose(post.quantile(0.5), np.exp(plain.quantile(0.5)), rtol=1e-3)
    assert "s1" in post.summary() and post.expect(lambda v: v[:, 0]) == pytest.approx(post.mean[0])
    assert post.resample(10, rng=0).shape == (10, 2)


def test_a_transform_to_one_number_a_draw_and_its_names():
    target, params = fitted_gaussian()
    post = pf.posterior(params, target, 5000, rng=1, transform=lambda z: z[:, 0] - z[:, 1], names=["diff"])
    assert post.mean.shape == (1,) and post.names == ["diff"]
    assert abs(post.mean[0] - 1.5) < 4 * post.mcse[0] + 1e-3


@pytest.mark.parametrize("transform, names, error, words", [
    (lambda z: z, ["a"], ValueError, "names: expected 2 strings"),
    ("exp", None, TypeError, "transform: expected a function"),
    (lambda z: z + 1j, None, TypeError, "transform: expected real numbers"),
    (lambda z: np.where(z > 0, np.nan, z), None, ValueError, "transform: returned NaN or infinite"),
    (lambda z: z[:5], None, ValueError, "transform: expected values of shape"),
    (lambda z: np.ones((len(z), 2, 2)), None, ValueError, "transform: expected values of shape"),
    (lambda z: z, [1, 2], ValueError, "names: expected strings"),
    (lambda z: np.empty((len(z), 0)), None, ValueError, "transform: expected values of shape"),
])
def test_a_bad_transform_is_named(transform, names, error, words):
    target, params = fitted_gaussian()
    with pytest.raises(error, match=words):
        pf.posterior(params, target, 1000, rng=1, transform=transform, names=names)


# --- no stray warnings ---------------------------------------------------------------------------

def test_a_funnel_whose_mode_search_walks_into_its_neck_warns_only_through_planarflow():
    target, _, _ = posteriors.funnel(10, 2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pf.fit(target, 2, 30, 32, rng=0, progress=False)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


# --- the tail check ------------------------------------------------------------------------------

from planarflow.library.posterior import Posterior, check_tails  # noqa: E402


def weighted(sd, n=40_000, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, 2)) * sd
    return Posterior(x, np.zeros(n), -1.0)


def test_the_tail_check_compares_sds_beyond_their_noise():
    same = check_tails(weighted([1.0, 2.0]), weighted([1.0, 2.0], seed=1))
    assert not same["flagged"] and np.all(np.abs(same["sd_change"]) < 0.02)
    assert np.all(same["z_sd"] < 4)                          # the same distribution: within its noise
    with pytest.warns(pf.TailWarning, match=r"sd of x\[1\] is \+20%"):
        wider = check_tails(weighted([1.0, 2.0]), weighted([1.0, 2.4], seed=1))
    assert wider["flagged"] and wider["sd_change"][1] == pytest.approx(0.2, abs=0.02)


def test_a_quantity_constant_to_rounding_is_not_compared():
    """A constant's sd is rounding (a few ulp, or 0): the ratio of two roundings is no evidence of
    tails. Before, a transform with a column of ones was flagged at −75%."""
    ones = lambda post: Posterior(np.c_[post.samples[:, 0], np.ones(post.n) + 1e-16 * post.samples[:, 1]],
                                  np.zeros(post.n), -1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tails = check_tails(ones(weighted([1.0, 1.0])), ones(weighted([1.0, 1.0], seed=1)))
    assert not tails["flagged"] and list(tails["compared"]) == [True, False]
    assert tails["sd_change"][1] == 0.0 and tails["z_sd"][1] == 0.0
    zeros = Posterior(np.zeros((100, 1)), np.zeros(100), -1.0)
    zeros.tails = check_tails(zeros, Posterior(np.zeros((100, 1)), np.zeros(100), -1.0))
    assert zeros.summary().splitlines()[1] == "tail check: nothing to compare (every quantity is constant)."


def test_moments_of_values_near_the_float64_limit_do_not_overflow():
    """sd, mcse and the sd's standard error of values ~1e200 are those of the values at unit scale
    times 1e200 (formed from deviations scaled to ≤ 1), not inf."""
    unit, big = weighted([1.0, 2.0], n=2000), weighted([1e200, 2e200], n=2000)
    assert np.all(np.isfinite(big.sd)) and np.all(np.isfinite(big.mcse))
    np.testing.assert_allclose(big.sd, 1e200 * unit.sd, rtol=1e-12)
    np.testing.assert_allclose(big.mcse, 1e200 * unit.mcse, rtol=1e-12)
    from planarflow.library.posterior import sd_errors
    np.testing.assert_allclose(sd_errors(big), 1e200 * sd_errors(unit), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not check_tails(big, weighted([1e200, 2e200], n=2000, seed=1))["flagged"]


def test_the_summary_names_the_largest_change_in_a_sentence():
    post = weighted([1.0, 2.0], n=2000)
    post.names = ["a", "b"]
    check_tails(post, weighted([1.0, 2.0], n=2000, seed=1))
    line = post.summary().splitlines()[1]
    assert line.startswith("tail check: a wider base agrees within its noise (largest change: sd(")
    assert line.endswith("%).")
    with pytest.warns(pf.TailWarning):
        check_tails(post, weighted([1.0, 2.4], seed=1))
    assert post.summary().splitlines()[1].startswith("TAILS FALL SHORT (TailWarning): with a wider base, sd(b)")


def test_a_small_change_or_a_noisy_one_is_not_flagged():
    """3% more, far beyond its noise (40 000 draws), is under the 5% bar; 20% more from 200 draws
    is within it."""
    assert not check_tails(weighted([1.0, 1.0]), weighted([1.0, 1.03], seed=1))["flagged"]
    assert not check_tails(weighted([1.0, 1.0], n=200), weighted([1.0, 1.2], n=200, seed=1))["flagged"]


def test_a_right_fit_passes_the_tail_check_and_the_summary_says_so():
    target, mean, sd = posteriors.wide_regression()
    params, _ = pf.fit(target, 16, 3000, 512, rng=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post = pf.posterior(params, target, 20_000, rng=1)
    assert not post.tails["flagged"] and "tail check: a wider base agrees" in post.summary()
    assert pf.posterior(params, target, 1000, rng=1, tails=False).tails is None
    with pytest.raises(TypeError, match="tails"):
        pf.posterior(params, target, 1000, rng=1, tails="yes")


@pytest.mark.parametrize("case", range(4))
def test_posteriors_whose_tails_hide_from_k_hat_come_back_right_or_flagged(case):
    """Funnels, the centred eight schools, a latent GP: the README's call either gets them right
    (means within 0.1 sd, sds within 10%) or says it did not — k̂ > 0.7, or a TailWarning."""
    name, target, mean, sd = posteriors.tail_set()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.FitWarning)
        params, _ = pf.fit(target, 16, 3000, 512, rng=2, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = pf.posterior(params, target, 20_000, rng=12)
    dm, ds = posteriors.judge(post, mean, sd)
    said = {w.category for w in caught}
    assert (dm < 0.1 and ds < 0.1) or pf.UnreliablePosteriorWarning in said or pf.TailWarning in said, \
        (name, dm, ds, post.k_hat, post.tails["sd_change"])
