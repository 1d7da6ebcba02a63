"""Every estimate a researcher reads, against an independent truth.

The truth comes from outside the code under test: a Gaussian target p = N(0, I) under a Gaussian
proposal q = N(m, s²·I) — a flow whose planar layers are the identity (û = 0 exactly) under a base
μ = m, σ = s — where the importance weights w = p/q, their moments and the estimators' spreads
are integrals in one dimension, computed here by quadrature; brute-force recomputations written
differently here; values recorded from ArviZ; and the scatter of an estimate over repeated
independent runs (an error bar must cover the truth as often as it says, and be neither too wide
nor too narrow). Then what TrainingDiverged carries and the best-parameters keeper's margin, at
their edges. Every tolerance says where it comes from; none comes from the code under test.
"""

import warnings

import numpy as np
import pytest

import planarflow as pf
from planarflow import base, diagnostics
from planarflow.library.training import BestKeeper

PHI_INV = {0.05: -1.6448536269514722, 0.5: 0.0, 0.95: 1.6448536269514722}   # N(0, 1) quantiles


def gaussian_flow(m, s, d, K=2):
    """A flow that is exactly N(m, s²·I): planar layers at the identity under the base μ = m, σ = s."""
    params = pf.init_params(K, d, rng=0, u_scale=0.0, base=True)
    params["mu"], params["log_sigma"] = np.full(d, float(m)), np.full(d, np.log(s))
    return params


def integral(f):
    """∫ f(x) dx over the line, by the trapezoidal rule on a grid far finer than any width here."""
    x = np.linspace(-40.0, 40.0, 400_001)
    y = f(x)
    return float(np.sum(y[1:] + y[:-1]) * (x[1] - x[0]) / 2)


def normal(x, m=0.0, s=1.0):
    return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))


def weighted_moment(g, m, s):
    """E_q[w(x)²·g(x)] in one dimension, w = p/q, p = N(0, 1), q = N(m, s²)."""
    return integral(lambda x: normal(x) ** 2 / normal(x, m, s) * g(x))


def draw_posterior(m, s, d, n, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.UnreliablePosteriorWarning)
        return pf.posterior(gaussian_flow(m, s, d), pf.Gaussian(np.zeros(d), np.ones(d)), n, rng=seed)


# --- posterior estimates: means, sds, quantiles, MCSE ---------------------------------------------

def test_posterior_mean_sd_and_quantiles_are_the_targets_within_their_known_spread():
    """p = N(0, 1) in each of 2 coordinates from q = N(0.5, 1.3²), 200 000 draws. The tolerances
    are 4.5 of each estimator's asymptotic sd, by quadrature: √(E_q[w²x²]/n) for the mean,
    √(E_q[w²(x² − 1)²]/n)/2 for the sd, √(E_q[w²(1{x ≤ ξ} − α)²]/n)/p(ξ) for the α-quantile ξ. An sd
    taken around the unweighted mean (1.118 here), or quantiles of q, fail by far."""
    m, s, n = 0.5, 1.3, 200_000
    post = draw_posterior(m, s, 2, n, seed=1)
    tol_mean = 4.5 * np.sqrt(weighted_moment(lambda x: x * x, m, s) / n)
    tol_sd = 4.5 * np.sqrt(weighted_moment(lambda x: (x * x - 1) ** 2, m, s) / n) / 2
    assert np.all(np.abs(post.mean) < tol_mean), (post.mean, tol_mean)
    assert np.all(np.abs(post.sd - 1.0) < tol_sd), (post.sd, tol_sd)
    for alpha, xi in PHI_INV.items():
        spread = np.sqrt(weighted_moment(lambda x: ((x <= xi) - alpha) ** 2, m, s) / n) / normal(xi)
        assert np.all(np.abs(post.quantile(alpha) - xi) < 4.5 * spread), (alpha, post.quantile(alpha), spread)
    assert 0.005 < tol_mean < 0.02 and 0.005 < tol_sd < 0.02          # tight enough to see a bug


def test_posterior_statistics_are_those_of_its_own_weights_recomputed_another_way():
    """The weights are PSIS's of the draws' log p − log q; mean, sd, MCSE, ESS and quantiles follow
    from them by independent formulas (np.average, the weighted second moment minus the squared
    mean, a sorted cumulative sum and linear interpolation written out), to rounding."""
    post = draw_posterior(0.3, 1.2, 3, 5000, seed=2)
    w, x = post.weights, post.samples
    assert abs(w.sum() - 1.0) < 1e-12 and np.all(w >= 0)
    # the weights are PSIS's smoothing of log p − log q at these draws (log q by the inverse)
    log_w = -0.5 * (x * x).sum(axis=1) - pf.log_prob(gaussian_flow(0.3, 1.2, 3), x)
    np.testing.assert_allclose(w, np.exp(pf.psis(log_w)[0]), rtol=1e-9)
    mean = np.average(x, axis=0, weights=w)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(post.sd, np.sqrt(np.einsum("n,nd->d", w, x * x) - mean ** 2), rtol=1e-9)
    np.testing.assert_allclose(post.mcse, np.sqrt(np.einsum("n,nd->d", w * w, (x - mean) ** 2)), rtol=1e-12)
    assert post.ess == pytest.approx(1.0 / np.dot(w, w), rel=1e-12)
    for j in range(3):
        order = np.argsort(x[:, j])
        centre = np.cumsum(w[order]) - w[order] / 2             # each draw's weight centred on it
        for alpha in (0.05, 0.5, 0.95):
            i = np.searchsorted(centre, alpha)                   # centre[i-1] < α ≤ centre[i]
            frac = (alpha - centre[i - 1]) / (centre[i] - centre[i - 1])
            expected = x[order[i - 1], j] + frac * (x[order[i], j] - x[order[i - 1], j])
            assert post.quantile(alpha)[j] == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_the_mcse_covers_the_truth_as_often_as_it_says_and_is_the_right_size():
    """400 independent runs of 2000 draws: |mean| ≤ 2·MCSE in 95.4% of them if the MCSE is right —
    accepted between 91% and 99% (4 binomial sds: 1.05% each); the runs' own scatter of the mean
    against their root-mean-square MCSE within 0.85–1.17 (the sd of a 400-run sd is 3.5%), and that
    MCSE within 8% of the asymptotic √(E_q[w²x²]/n) by quadrature. An MCSE three times too large,
    or too small, fails all three."""
    m, s, n, runs = 0.5, 1.3, 2000, 400
    means, mcses = np.empty(runs), np.empty(runs)
    for r in range(runs):
        post = draw_posterior(m, s, 1, n, seed=100 + r)
        means[r], mcses[r] = post.mean[0], post.mcse[0]
    covered = np.mean(np.abs(means) <= 2 * mcses)
    assert 0.91 <= covered <= 0.99, covered
    rms = np.sqrt(np.mean(mcses ** 2))
    assert 0.85 <= np.std(means, ddof=1) / rms <= 1.17, (np.std(means, ddof=1), rms)
    assert rms == pytest.approx(np.sqrt(weighted_moment(lambda x: x * x, m, s) / n), rel=0.08)


def test_resampled_draws_are_a_sample_of_the_target():
    """resample(m) draws with the weights' probabilities: 200 000 of them from the 2000 draws of
    q = N(0.5, 1.3²) have mean 0 and sd 1 within 4.5 sds of what resampling adds to the weighted
    estimate (√(1/m + MCSE²) for the mean, √(1/(2m) + MCSE_sd²) for the sd, MCSE_sd ≈ 0.03 here)."""
    post = draw_posterior(0.5, 1.3, 1, 2000, seed=3)
    x = post.resample(200_000, rng=4)[:, 0]
    assert abs(x.mean()) < 4.5 * np.sqrt(1 / 200_000 + post.mcse[0] ** 2)
    assert abs(x.std() - 1.0) < 4.5 * np.sqrt(1 / 400_000 + 0.03 ** 2)
    assert abs(x.mean() - post.mean[0]) < 4.5 / np.sqrt(200_000)       # the same weights


# --- the KL and its standard error ----------------------------------------------------------------

def test_kl_and_its_stderr_are_those_of_the_same_draws_in_one_pass():
    """n = 20 000 draws go through kl_divergence in three chunks, merged as it goes; the same draws
    (the generator's stream does not depend on how it is split) give the mean and the sample sd of
    log q + U in one NumPy call here. Agreement to 1e-12 relative — a merge that dropped its
    between-chunk term would differ by about 1e-4."""
    params = gaussian_flow(0.4, 0.9, 2)
    target = pf.Gaussian(np.zeros(2), np.ones(2))
    n, log_z = 20_000, np.log(2 * np.pi)
    assert n > 2 * diagnostics.CHUNK
    kl, stderr = pf.kl_divergence(params, target, n, rng=5, log_z=log_z)
    x, log_q = pf.sample(params, n, rng=5)
    v = log_q + 0.5 * (x * x).sum(axis=1)
    assert kl == pytest.approx(v.mean() + log_z, rel=1e-12)
    assert stderr == pytest.approx(v.std(ddof=1) / np.sqrt(n), rel=1e-12)


def test_kl_error_bars_cover_the_closed_form_as_often_as_they_say():
    """KL(N(m, s²) ‖ N(0, 1)) = −log s + (s² + m² − 1)/2 per coordinate. 300 runs of 1000 draws:
    within 2 standard errors in 91–99% of them (95.4% expected, 1.2% a binomial sd), the runs'
    scatter against their rms standard error within 0.84–1.18 (4 sds of a 300-run sd)."""
    m, s, d = 0.4, 0.9, 2
    truth = d * (-np.log(s) + (s * s + m * m - 1) / 2)
    params = gaussian_flow(m, s, d)
    target = pf.Gaussian(np.zeros(d), np.ones(d))
    runs = np.array([pf.kl_divergence(params, target, 1000, rng=r, log_z=np.log(2 * np.pi)) for r in range(300)])
    covered = np.mean(np.abs(runs[:, 0] - truth) <= 2 * runs[:, 1])
    assert 0.91 <= covered <= 0.99, covered
    assert 0.84 <= np.std(runs[:, 0], ddof=1) / np.sqrt(np.mean(runs[:, 1] ** 2)) <= 1.18


# --- importance sampling: log Ẑ, ESS, k̂ --------------------------------------------------------

def test_log_z_and_ess_match_the_closed_form():
    """log Z = (d/2)·log 2π for U = ½‖x‖²; with E_q[w] = 1 per coordinate, the sd of Ẑ/Z is
    √((E_q[w²]^d − 1)/n), and ESS/n tends to 1/E_q[w²]^d. Tolerances: 5 sds for log Ẑ; 0.6% for
    ESS/n, 5 of its relative sds (0.12%, the spread of 40 runs with other seeds)."""
    m, s, d, n = 0.3, 1.4, 2, 100_000
    second = weighted_moment(lambda x: np.ones_like(x), m, s) ** d         # E_q[w²] in d coordinates
    log_z, ess, k_hat = pf.importance_log_z(gaussian_flow(m, s, d), pf.Gaussian(np.zeros(d), np.ones(d)), n,
                                            rng=3, return_k_hat=True)
    assert abs(log_z - np.log(2 * np.pi)) < 5 * np.sqrt((second - 1) / n)
    assert ess == pytest.approx(1 / second, rel=0.006)
    assert k_hat < 0.3                                   # a wider proposal: bounded weights


@pytest.mark.parametrize("s", [0.8, 0.7])
def test_k_hat_is_the_tail_index_of_a_narrower_gaussian_proposal(s):
    """For p = N(0, 1) and q = N(0, s²), s < 1, the weights w ∝ exp(x²(1/s² − 1)/2) have a Pareto
    tail with shape k = 1 − s² (P(w > t) ∝ t^{−1/(1 − s²)}): 0.36 and 0.51. With 100 000 draws the
    tail holds 949 weights and k̂'s sd is about (1 + k)/√949 ≈ 0.05: tolerance 0.15 (3 sds)."""
    n = 100_000
    x = s * np.random.default_rng(int(10 * s)).standard_normal(n)
    log_w = -0.5 * x * x + 0.5 * (x / s) ** 2
    _, k_hat = pf.psis(log_w)
    assert abs(k_hat - (1 - s * s)) < 0.15, k_hat


# --- PSIS's smoothed weights --------------------------------------------------------------------

ARVIZ_TAIL = [   # arviz.psislw (ArviZ 0.23.4) of the 100 log weights below: its 20 largest, ascending
    -4.483991981888, -4.471049750948, -4.457183610208, -4.442272085124, -4.42616935835,
    -4.408698472264, -4.389642017322, -4.368729112336, -4.345616769009, -4.319862488631,
    -4.290882675794, -4.257887131175, -4.219771130088, -4.174927558304, -4.120896388348,
    -4.053648729334, -3.965931951345, -3.842682491893, -3.643818720561, -3.241723885532]
ARVIZ_K = 0.5223427112458521


def log_weights_for_arviz():
    s = 0.7
    x = s * np.random.default_rng(7).standard_normal(100)
    return -0.5 * x * x + 0.5 * (x / s) ** 2 + np.log(s)


def test_smoothed_weights_match_arviz():
    log_w = log_weights_for_arviz()
    smoothed, k_hat = pf.psis(log_w)
    assert k_hat == pytest.approx(ARVIZ_K, abs=1e-10)
    np.testing.assert_allclose(np.sort(smoothed)[-20:], ARVIZ_TAIL, rtol=0, atol=1e-9)


def test_smoothed_tail_is_the_generalized_paretos_expected_order_statistics():
    """The M largest weights become u + F⁻¹((i − ½)/M), i = 1..M, F⁻¹(α) = σ̂·((1 − α)^{−k̂} − 1)/k̂,
    the GPD fitted to their exceedances over u, the (M+1)-th largest (capped at the largest raw
    weight); the rest are untouched; then all are normalised. Written out here from the fit's k̂, σ̂
    and u alone."""
    log_w = log_weights_for_arviz()
    smoothed, k_hat = pf.psis(log_w)
    M = int(np.ceil(min(0.2 * log_w.size, 3 * np.sqrt(log_w.size))))
    order = np.argsort(log_w)
    scale = np.exp(log_w[order[-1]])                              # weights relative to the largest
    w = np.exp(log_w) / scale
    u = w[order[-(M + 1)]]
    k, log_sigma, _ = diagnostics.pareto_k(np.sort(log_w)[-(M + 1):])
    assert k == pytest.approx(k_hat, abs=1e-15)
    alpha = (np.arange(1, M + 1) - 0.5) / M
    tail = np.minimum(u + np.exp(log_sigma) * ((1 - alpha) ** (-k) - 1) / k, 1.0)
    expected = w.copy()
    expected[order[-M:]] = tail
    expected /= expected.sum()
    np.testing.assert_allclose(np.exp(smoothed), expected, rtol=1e-10)


# --- what a diverged run carries, and the keeper's margin ------------------------------------------

class Breakable:
    """U = ½‖(x − c)/s‖² + offset in 2-D, NaN everywhere once ``broken`` is set."""

    dim = 2

    def __init__(self, c=0.0, s=1.0):
        self.broken, self.offset, self.c, self.s = False, 0.0, c, s

    def energy_and_grad(self, x):
        r = (x - self.c) / self.s
        U = 0.5 * (r * r).sum(axis=1) + self.offset
        return (np.full(len(x), np.nan) if self.broken else U), r / self.s

    def energy(self, x):
        return self.energy_and_grad(x)[0]


def keeper_best_step(losses, steps):
    """fit's rule for the best parameters, written out: an exponential moving average of the loss
    over W = max(10, min(200, steps/20)) steps, compared every W/10 steps once W have passed; the
    step after which the lowest average was seen."""
    W = max(10, min(200, steps // 20))
    stride, mean, best, best_step = max(1, W // 10), None, np.inf, None
    for count, loss in enumerate(losses, start=1):
        mean = loss if mean is None else mean + (loss - mean) / W
        if count >= W and count % stride == 0 and mean < best:
            best, best_step = mean, count
    return best_step


def test_training_diverged_carries_the_best_and_the_last_valid_parameters():
    """The target turns NaN after step S, so step S's loss is not finite: .last_params are the last
    at which the loss and gradient were finite, those step S − 1 started from (after S − 1 steps),
    and .params those after the keeper's best step — each reproduced by a run that stops there."""
    settings = dict(K=2, batch_size=64, lr=0.02, rng=0, start="standard", progress=False)
    S, T = 300, 400
    target = Breakable(c=np.array([0.8, -0.5]), s=0.7)            # a flow at N(0, I) has a way to go

    def break_after(t, loss, beta):
        if t + 1 == S:
            target.broken = True

    with pytest.raises(pf.TrainingDiverged) as info:
        pf.fit(target, steps=T, callback=break_after, **settings)
    err = info.value
    assert err.step == S and len(err.history["loss"]) == S
    after_s, _ = pf.fit(Breakable(target.c, target.s), steps=S - 1, keep_best=False, **settings)
    best = keeper_best_step(err.history["loss"], T)
    after_best, _ = pf.fit(Breakable(target.c, target.s), steps=best, keep_best=False, **settings)
    assert 40 < best < S and best % 10 != 0             # a step the keeper's W/10 = 2 stride reaches
    for k in after_s:
        np.testing.assert_array_equal(err.last_params[k], after_s[k])
        np.testing.assert_array_equal(err.params[k], after_best[k])
    assert any(not np.array_equal(after_s[k], after_best[k]) for k in after_s)


@pytest.mark.parametrize("excess, rolled_back", [(-1e-9, False), (1e-9, True)])
def test_the_keeper_rolls_back_exactly_beyond_its_margin(excess, rolled_back):
    """finish() returns the best parameters when the final average exceeds the best by more than
    0.05 nats + 5 standard errors √(v/(2W − 1)) — here just inside and just outside that margin."""
    members = {"u": np.zeros((1, 2, 2)), "w": np.ones((1, 2, 2)), "b": np.zeros((1, 2))}
    keeper = BestKeeper(members, steps=4000, begin=0)
    W = keeper.W
    keeper.count, keeper.var = W, np.array([0.3])
    keeper.best, keeper.best_step = np.array([-1.0]), np.array([1234])
    keeper.params = {k: np.full_like(v, 7.0) for k, v in members.items()}
    margin = 0.05 + 5 * np.sqrt(0.3 / (2 * W - 1))
    keeper.mean = np.array([-1.0 + margin + excess])
    message = keeper.finish(members, 4000)
    assert (message is not None) == rolled_back
    assert np.all(members["u"] == 7.0) == rolled_back
    assert keeper.returned_step[0] == (1234 if rolled_back else 4000)


@pytest.mark.parametrize("offset, rolled_back", [(0.049, False), (0.051, True)])
def test_a_fit_whose_loss_rises_just_past_the_margin_returns_its_best(offset, rolled_back):
    """A flow that already equals its target (the identity, p = N(0, I)) and a learning rate so small
    (1e-12) that it stays there: its loss is −log 2π to 1e-9 at every step, so the standard error
    is 0 and the margin 0.05 nats. After step 400 the energy gains a constant offset, which raises
    the loss by exactly that much and moves nothing else; 600 steps later the average has risen by
    the offset to within 1e-5 (W = 50: (1 − 1/50)⁶⁰⁰ = 5e-6)."""
    target = Breakable()
    identity = pf.init_params(2, 2, rng=0, u_scale=0.0)

    def shift(t, loss, beta):
        if t + 1 == 400:
            target.offset = offset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = pf.fit(target, 2, 1000, 64, lr=1e-12, rng=0, params=identity, progress=False, stop="steps",
                            callback=shift)
    assert np.ptp(history["loss"][:400]) < 1e-9
    assert any(issubclass(w.category, pf.FitWarning) for w in caught) == rolled_back
    assert (history["returned_step"] < 1000) == rolled_back
