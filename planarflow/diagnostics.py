"""Quality numbers a user can trust: log Z by quadrature, the exact KL, importance sampling.

    KL(q_K ‖ p) = E_q[log q_K(z) + U(z)] + log Z                   (≥ 0; 0 iff q_K = p)
    log Ẑ       = logsumexp_i(−U(zᵢ) − log q_K(zᵢ)) − log n,  zᵢ ~ q_K
    ESS / n     = (Σ wᵢ)² / (n·Σ wᵢ²),  wᵢ = e^{−U(zᵢ) − log q_K(zᵢ)}

The KL is in nats; it is what the paper's Figure 3(d) plots (as the free energy −log Z + KL).
Importance sampling needs no grid and works in any dimension: with a perfect flow every weight
is Z, log Ẑ = log Z exactly and ESS/n = 1; the further q_K is from p, the more a few large
weights dominate, ESS/n falls towards 1/n and log Ẑ tends to underestimate log Z.

Samples are drawn with reference.sample (looked up when called, like every reference function
the lesson files use), CHUNK at a time, and only running sums are kept, so
the memory used does not grow with n.
"""

import numpy as np

from . import reference

CHUNK = 8192             # samples per reference.sample call (its caches: ~80·K bytes a sample)


def logsumexp(x):
    """log Σ eˣ of an array, without overflow."""
    m = np.max(x)
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
    keeps the digits a one-pass Σx² would cancel.
    """
    rng = np.random.default_rng(rng)
    count, mean, m2 = 0, 0.0, 0.0
    for m in _chunks(n):
        z, log_q = reference.sample(params, m, rng)
        v = log_q + target.energy(z)
        v_mean = float(np.mean(v))
        delta = v_mean - mean
        total = count + m
        mean += delta * m / total
        m2 += float(np.sum((v - v_mean) ** 2)) + delta * delta * count * m / total
        count = total
    return float(mean + log_z), float(np.sqrt(m2 / (n - 1) / n))


def importance_log_z(params, target, n, rng):
    """Importance-sampling estimate of log Z with q_K as the proposal, and ESS/n of its weights.

    log Ẑ = logsumexp(log wᵢ) − log n and ESS/n = exp(2·logsumexp(log wᵢ) − logsumexp(2 log wᵢ))/n,
    log wᵢ = −U(zᵢ) − log q_K(zᵢ); both log-sums are taken per chunk, then over the chunks.
    Returns (log_z, ess_fraction).
    """
    rng = np.random.default_rng(rng)
    lse, lse2 = [], []
    for m in _chunks(n):
        z, log_q = reference.sample(params, m, rng)
        log_w = -target.energy(z) - log_q
        lse.append(logsumexp(log_w))
        lse2.append(logsumexp(2.0 * log_w))
    total = logsumexp(np.array(lse))
    return total - float(np.log(n)), float(np.exp(2.0 * total - logsumexp(np.array(lse2))) / n)
