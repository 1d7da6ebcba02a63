"""Quality numbers a user can trust: log Z by quadrature, the exact KL, importance sampling.

    KL(q_K ‖ p) = E_q[log q_K(z) + U(z)] + log Z                   (≥ 0; 0 iff q_K = p)
    log Ẑ       = logsumexp_i(−U(zᵢ) − log q_K(zᵢ)) − log n,  zᵢ ~ q_K
    ESS / n     = (Σ wᵢ)² / (n·Σ wᵢ²),  wᵢ = e^{−U(zᵢ) − log q_K(zᵢ)}
    k̂           the Pareto shape of the largest wᵢ (PSIS): < 0.7, the estimates are reliable

The KL is in nats; it is what the paper's Figure 3(d) plots (as the free energy −log Z + KL).
Importance sampling needs no grid and works in any dimension: with a perfect flow every weight
is Z, log Ẑ = log Z exactly and ESS/n = 1; the further q_K is from p, the more a few large
weights dominate, ESS/n falls towards 1/n and log Ẑ tends to underestimate log Z. When the
weights are heavy-tailed, ESS itself is unreliable (a few draws decide it, and another n draws
give another number); Pareto-smoothed importance sampling's k̂ says when (``psis``).

Samples are drawn with reference.sample — base.sample for a flow with a learnable base (both
looked up when called, like every function the lesson files use) — CHUNK at a time, and only
running sums are kept, so the memory used does not grow with n.
"""

import numpy as np

from . import base, reference

CHUNK = 8192             # samples per sample call (its caches: ~80·K bytes a sample)


def sample(params, n, rng):
    """n samples of the flow and their log-density: base.sample with a learnable base, else
    reference.sample."""
    return (base if "mu" in params else reference).sample(params, n, rng)


def logsumexp(x):
    """log Σ eˣ of an array, without overflow (−inf when every eˣ is 0)."""
    m = np.max(x)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.sum(np.exp(x - m))))


def log_partition(target, limit, spacing=0.02):
    """log Z = log ∫ exp(−U(z)) dz of a 2-D target by the trapezoidal rule on [−limit, limit]².

    The nodes sit at integer multiples of ``spacing``. For a smooth integrand that vanishes at
    the edges the trapezoidal rule converges faster than any power of the spacing; the box wall
    is only C¹ at |zᵢ| = box, and putting those lines on nodes keeps that error O(spacing⁴).

    Two checks make a wrong number impossible to miss. exp(−U) must have fallen below 1e-12 of
    its peak on the edge of the grid (else the grid does not hold the mass, or Z = ∞: U2–U4
    with box=None). And the same sum over every other node — the rule at twice the spacing,
    for free — must agree to 1e-4: a density too narrow for the grid (a peak between nodes)
    changes by about log 4 when the spacing doubles, a resolved one by far less than 1e-4.
    """
    n = int(np.ceil(limit / spacing))
    x = spacing * np.arange(-n, n + 1)                 # (2n + 1,) nodes
    log_wx = np.zeros(x.size)
    log_wx[[0, -1]] = np.log(0.5)                      # trapezoid weights ½ at the ends
    coarse = np.arange(x.size) % 2 == 0                # the nodes of the rule at 2·spacing
    log_wx2 = np.where(coarse, 0.0, -np.inf)
    log_wx2[[0, -1]] = np.log(0.5)                     # (2n + 1 nodes: both ends are even)
    rows = max(1, CHUNK * 8 // x.size)
    fine, doubled, peak, edge = [], [], -np.inf, -np.inf
    for i in range(0, x.size, rows):                   # a block of z₁ rows at a time
        z1, z2 = np.meshgrid(x[i:i + rows], x, indexing="ij")
        neg_U = -target.energy(np.column_stack([z1.ravel(), z2.ravel()])).reshape(z1.shape)
        if np.any(np.isnan(neg_U) | (neg_U == np.inf)):
            raise ValueError("target: energy returned NaN or −inf on the quadrature grid")
        peak = max(peak, float(np.max(neg_U)))
        edge = max(edge, float(np.max(neg_U[:, [0, -1]])))                   # z₂ = ±limit
        if i == 0:
            edge = max(edge, float(np.max(neg_U[0])))                       # z₁ = −limit
        if i + rows >= x.size:
            edge = max(edge, float(np.max(neg_U[-1])))                      # z₁ = +limit
        fine.append(logsumexp(neg_U + log_wx[i:i + rows, None] + log_wx[None, :]))
        doubled.append(logsumexp(neg_U + log_wx2[i:i + rows, None] + log_wx2[None, :]))
    if edge - peak > np.log(1e-12):
        raise ValueError(
            f"target: exp(−U) has not vanished at the edge of the grid [−{x[-1]:g}, {x[-1]:g}]² "
            f"(it is {np.exp(edge - peak):.1e} of its peak there): pass a larger limit, or log_z "
            f"if you know it; the density may be improper (U2–U4 with box=None have Z = ∞)")
    log_z = logsumexp(np.array(fine)) + 2.0 * np.log(spacing)
    log_z2 = logsumexp(np.array(doubled)) + 2.0 * np.log(2.0 * spacing)
    if abs(log_z - log_z2) > 1e-4:
        raise ValueError(
            f"spacing: the grid is too coarse for this density (log Z = {log_z:.4f} at spacing "
            f"{spacing:g}, {log_z2:.4f} at {2 * spacing:g}): pass a smaller spacing, or log_z")
    return log_z


def _chunks(n):
    """Sizes of the successive draws of n samples, CHUNK at a time."""
    return [min(CHUNK, n - i) for i in range(0, n, CHUNK)]


def kl_divergence(params, target, n, rng, log_z):
    """KL(q_K ‖ p) in nats from n fresh samples and its Monte-Carlo standard error.

    KL = mean(log q_K(zᵢ) + U(zᵢ)) + log Z and stderr = std(log q_K + U)/√n. The mean and the
    sum of squared deviations are merged chunk by chunk (Chan et al.'s pairwise update), which
    keeps the digits a one-pass Σx² would cancel. A KL beyond float64's range is (inf, inf).
    """
    rng = np.random.default_rng(rng)
    count, mean, m2 = 0, 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for m in _chunks(n):
            z, log_q = sample(params, m, rng)
            v = log_q + target.energy(z)
            v_mean = float(np.mean(v))
            if not np.isfinite(v_mean):
                return np.inf, np.inf
            delta = v_mean - mean
            total = count + m
            mean += delta * m / total
            m2 += float(np.sum((v - v_mean) ** 2)) + delta * delta * count * m / total
            count = total
    kl, stderr = mean + log_z, np.sqrt(m2 / (n - 1) / n)
    finite = np.isfinite(kl) and np.isfinite(stderr)
    return (float(kl), float(stderr)) if finite else (np.inf, np.inf)


def importance_log_z(params, target, n, rng, return_k_hat=False):
    """Importance-sampling estimate of log Z with q_K as the proposal, and ESS/n of its weights.

    log Ẑ = logsumexp(log wᵢ) − log n and ESS/n = (Σwᵢ)²/(n·Σwᵢ²), log wᵢ = −U(zᵢ) − log q_K(zᵢ).
    Each chunk c keeps its largest log weight m_c and a_c = log Σ e^{log wᵢ − m_c},
    b_c = log Σ e^{2(log wᵢ − m_c)}; then log Σw = m + logsumexp(m_c − m + a_c), m = max m_c, and
    ESS/n = e^{−logsumexp(2(m_c − log Σw) + b_c)}/n — no term can overflow or lose its digits,
    whatever the size of the weights. With return_k_hat, also the PSIS k̂ of the weights: only the
    largest M + 1 log weights are needed for it (``psis_tail_size``), kept as the chunks go.
    Returns (log_z, ess_fraction[, k_hat]).
    """
    rng = np.random.default_rng(rng)
    ms, a, b, top = [], [], [], np.empty(0)
    M = psis_tail_size(n)
    for m in _chunks(n):
        z, log_q = sample(params, m, rng)
        log_w = -target.energy(z) - log_q
        ms.append(float(np.max(log_w)))
        a.append(logsumexp(log_w - ms[-1]))
        b.append(logsumexp(2.0 * (log_w - ms[-1])))
        if return_k_hat:
            top = np.concatenate([top, log_w])
            if top.size > M + 1:
                top = np.partition(top, top.size - M - 1)[-(M + 1):]          # the M + 1 largest
    ms, a, b = np.array(ms), np.array(a), np.array(b)
    rel = ms - ms.max()                                   # (so that m_c + a_c loses no digits)
    total = logsumexp(rel + a)                            # log Σw − max m_c
    log_z = float(ms.max() + total - np.log(n))
    ess = float(np.exp(-logsumexp(2.0 * (rel - total) + b)) / n)
    if not return_k_hat:
        return log_z, ess
    return log_z, ess, float(pareto_k(np.sort(top))[0])


# --- Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry, JMLR 2024) -------
#
#   Importance weights wᵢ = p(zᵢ)/q(zᵢ) whose distribution has a heavy right tail make every
#   importance-sampling estimate noisy — the few largest weights decide it — and ESS, computed
#   from the same weights, does not show it. PSIS fits a generalized Pareto distribution (GPD)
#   to the M largest weights,
#
#       F(x) = 1 − (1 + ξ·x/σ)^{−1/ξ}   for the exceedances x = w − u over the threshold u,
#
#   and its shape estimate k̂ = ξ̂ diagnoses the tail: the weights have 1/ξ finite moments, and
#   for k̂ < 0.7 the (smoothed) importance-sampling estimates are reliable; above, they are not,
#   and neither is the ESS. Smoothing replaces the M largest weights by the GPD's expected order
#   statistics, which lowers the estimate's variance.
#
#   The GPD fit is Zhang & Stephens' (2009): with θ = −ξ/σ, for fixed θ the maximum-likelihood
#   shape is ξ(θ) = mean(log(1 − θ·x)) and the profile log-likelihood ℓ(θ) = n·(log(−θ/ξ(θ)) −
#   ξ(θ) − 1). θ is averaged over a grid of m = 30 + ⌊√n⌋ values weighted by e^{ℓ(θ)},
#
#       θ_j = 1/x_(n) + (1 − √(m/(j − ½)))/(3·x_(⌊n/4 + ½⌋)),   j = 1..m   (all below 1/x_(n)),
#
#   and ξ̂ = ξ(θ̂), σ̂ = −ξ̂/θ̂. Vehtari et al. then shrink ξ̂ towards 0.5 with a weak prior worth
#   10 observations: k̂ = (n·ξ̂ + 10·0.5)/(n + 10).
#
#   In logarithms. Importance weights can span more than float64's range — log weights 10⁶ nats
#   apart, when a flow misses its target — and then the exceedances e^{lᵢ} − e^{l_u} of all but
#   the largest underflow to 0, and x_(n/4) = 0 makes every θ_j infinite. So the fit keeps each
#   exceedance as its logarithm, log xᵢ = lᵢ + log(1 − e^{l_u − lᵢ}) (accurate for any gap), and
#   θ_j as a sign and log|θ_j|; with x scaled so that x_(n) = 1, θ_j = 1 − a_j·e^{−log x_q}/3,
#   a_j = √(m/(j − ½)) − 1 > 0, and log(1 − θ·x) = log(1 + e^{log|θ| + log x}) for θ < 0,
#   log(1 − θ·x) = log1p(−θ·x) for 0 < θ < 1. Nothing overflows or underflows to a NaN.
#
#   Ties. Exceedances that are exactly 0 — weights equal to the threshold u, as with equal or
#   integer-valued log weights, or a perfect proposal whose log weights agree to the last digit —
#   carry no information about a tail's shape; the GPD is fitted to the positive ones. With fewer
#   than 5 of those there is no tail to fit: k̂ = +inf when the largest weight outweighs all the
#   other tail weights together (one draw decides every estimate: unreliable), else k̂ = −inf
#   (a few distinct, bounded values: reliable). ArviZ 0.23 returns inf for exactly equal weights;
#   that would call a perfect fit unreliable, which planarflow does not copy.


def psis_tail_size(S):
    """M = ⌈min(0.2·S, 3·√S)⌉: how many of S independent draws' largest weights form the tail."""
    return int(np.ceil(min(0.2 * S, 3.0 * np.sqrt(S))))


def _signed_log(theta_sign, log_abs, log_x):
    """ξ(θ) = mean(log(1 − θ·x)) for each θ = sign·e^{log_abs} (< 1/x_(n) = 1) and x = e^{log_x}."""
    neg = theta_sign < 0
    out = np.empty(theta_sign.shape)
    t = log_abs[:, None] + log_x[None, :]
    out[neg] = np.logaddexp(0.0, t[neg]).mean(axis=1)                  # log(1 + |θ|·x)
    out[~neg] = np.log1p(-np.exp(t[~neg])).mean(axis=1)                # log(1 − θ·x), θ·x < 1
    return out


def gpd_fit(x=None, log_x=None):
    """Fit a generalized Pareto distribution to exceedances x > 0, sorted ascending — or to their
    logarithms ``log_x`` (which never underflow).

    Returns (k̂, σ̂): Zhang & Stephens' (2009) estimate with Vehtari et al.'s weak prior on the
    shape (see above); with ``log_x``, (k̂, log σ̂). At least 5 values.
    """
    logs = log_x is not None
    log_x = np.asarray(log_x if logs else np.log(x), dtype=np.float64)
    n = log_x.size
    top = log_x[-1]
    lx = log_x - top                                           # the largest exceedance is 1
    m = 30 + int(np.sqrt(n))
    j = np.arange(1, m + 1)
    # θ_j = 1 − e^{τ_j}, τ_j = log(a_j/3) − log x_q: a sign and log|θ_j| = log|expm1(τ_j)|
    tau = np.log((np.sqrt(m / (j - 0.5)) - 1.0) / 3.0) - lx[int(n / 4 + 0.5) - 1]
    sign = np.where(tau > 0, -1.0, 1.0)
    log_abs = np.where(tau > 0, tau + np.log(-np.expm1(-np.abs(tau))),
                       np.log(-np.expm1(np.minimum(tau, -1e-300))))
    xi = _signed_log(sign, log_abs, lx)                                   # ξ(θ_j)   (m,)
    profile = n * (log_abs - np.log(np.abs(xi)) - xi - 1.0)     # ℓ(θ_j) = n(log(−θ/ξ) − ξ − 1)
    weights = np.exp(profile - profile.max())
    weights /= weights.sum()
    big = log_abs.max()                                        # θ̂ = Σ w_j·θ_j, scaled by e^{big}
    scaled = np.sum(weights * sign * np.exp(log_abs - big))
    theta_sign = -1.0 if scaled < 0 else 1.0
    theta_log = big + np.log(abs(scaled)) if scaled != 0 else -np.inf
    xi_hat = float(_signed_log(np.array([theta_sign]), np.array([theta_log]), lx)[0])
    log_sigma = np.log(abs(xi_hat)) - theta_log + top          # σ̂ = −ξ̂/θ̂, in the units of x
    k_hat = (n * xi_hat + 10 * 0.5) / (n + 10)
    return (k_hat, log_sigma) if logs else (k_hat, float(np.exp(log_sigma)))


def pareto_k(top):
    """(k̂, log σ̂, log u) from the M + 1 largest log weights ``top``, sorted ascending: the GPD
    fitted to the M largest weights' exceedances over the next one, u (all scaled so that the
    largest weight is 1), in logarithms. k̂ = ±inf where there is no tail to fit (see above)."""
    lw = top - top[-1]                                      # the largest weight is 1
    log_u = lw[0]
    with np.errstate(divide="ignore"):                      # a tie: log 0 = −inf, dropped below
        log_x = lw[1:] + np.log(-np.expm1(log_u - lw[1:]))  # log(e^{lᵢ} − e^{l_u}), ascending  (M,)
    positive = log_x[np.isfinite(log_x)]
    if positive.size < 5:
        others = np.logaddexp.reduce(lw[:-1]) if lw.size > 1 else -np.inf      # log Σ of the rest
        return (np.inf if others < 0.0 else -np.inf), -np.inf, log_u
    k_hat, log_sigma = gpd_fit(log_x=positive)
    return k_hat, log_sigma, log_u


def psis(log_weights):
    """Pareto-smoothed importance sampling: (smoothed log weights, k̂).

    log_weights : ndarray, shape (S,), S ≥ 21 (so that the tail holds at least 5).
    The M = psis_tail_size(S) largest weights are replaced by the expected order statistics
    u + F̂⁻¹((z − ½)/M), z = 1..M, of the GPD fitted to them, truncated at the largest raw weight;
    then the log weights are normalised (logsumexp = 0). k̂ < 0.7: importance-sampling estimates
    from these weights are reliable; above, they are not. k̂ is never NaN: +inf when one weight
    outweighs the rest of the tail and no tail can be fitted, −inf when the largest weights take
    fewer than five distinct values and none dominates (a bounded tail, or a perfect proposal);
    the weights are then left as they are.
    """
    S = log_weights.size
    M = psis_tail_size(S)
    order = np.argsort(log_weights, kind="stable")
    shift = log_weights[order[-1]]
    k_hat, log_sigma, log_u = pareto_k(log_weights[order[-(M + 1):]])
    smoothed = log_weights - shift
    if np.isfinite(k_hat):
        p = (np.arange(1, M + 1) - 0.5) / M
        # log F⁻¹(p) = log σ + log((e^{c} − 1)/ξ), c = −ξ·log(1 − p); −σ·log(1 − p) as ξ → 0
        c = -k_hat * np.log1p(-p)
        if abs(k_hat) < 1e-12:
            log_q = np.log(-np.log1p(-p))
        elif k_hat > 0:                                     # e^c − 1 = e^c·(1 − e^{−c}), c > 0
            log_q = c + np.log(-np.expm1(-c)) - np.log(k_hat)
        else:
            log_q = np.log(-np.expm1(c)) - np.log(-k_hat)
        tail = np.logaddexp(log_sigma + log_q, log_u)
        smoothed[order[-M:]] = np.minimum(tail, 0.0)        # truncated at the raw maximum
    return smoothed - logsumexp(smoothed), float(k_hat)
