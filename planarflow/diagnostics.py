"""Quality numbers a user can trust: log Z by quadrature, the exact KL, importance sampling.

    KL(q_K ‖ p) = E_q[log q_K(z) + U(z)] + log Z                   (≥ 0; 0 iff q_K = p)
    log Ẑ       = logsumexp_i(−U(zᵢ) − log q_K(zᵢ)) − log M,  zᵢ ~ q_K
    ESS / M     = (Σ wᵢ)² / (M·Σ wᵢ²),  wᵢ = e^{−U(zᵢ) − log q_K(zᵢ)}

The KL is in nats; it is what the paper's Figure 3(d) plots (as the free energy −log Z + KL).
Importance sampling needs no grid and works in any dimension: with a perfect flow every weight
is Z, log Ẑ = log Z exactly and ESS/M = 1; the further q_K is from p, the more a few large
weights dominate, ESS/M falls towards 1/M and log Ẑ tends to underestimate log Z.
"""

import functools

import numpy as np

from .flow import sample
from .validation import as_float, as_int, check_params, check_target

CHUNK = 200_000          # points per energy evaluation: keeps memory near 30 MB per chunk


def _logsumexp(x):
    m = np.max(x)
    return float(m + np.log(np.sum(np.exp(x - m))))


def _energies(target, z):
    """U at the rows of z, in chunks (a target's energy may allocate several arrays of size N)."""
    return np.concatenate([np.asarray(target.energy(z[i:i + CHUNK]), dtype=np.float64)
                           for i in range(0, z.shape[0], CHUNK)])


def log_partition(target, limit=None, spacing=0.02):
    """log Z = log ∫ exp(−U(z)) dz of a 2-D target, by the trapezoidal rule on a square grid.

    The grid covers [−limit, limit]² with nodes every ``spacing``. By default limit is
    box + 15·wall for a boxed target (the wall has risen by ½·15² = 112 nats there) and 8
    otherwise. The trapezoidal rule converges faster than any power of the spacing for smooth
    integrands that vanish at the edges; the box wall is only C¹ at |zᵢ| = box, and putting those
    lines on grid nodes keeps that error O(spacing⁴). tests/test_diagnostics.py halves the
    spacing and sees log Z move by less than 1e-7, and reproduces reference values to 1e-5
    (for the four boxed targets the default spacing 0.02 is converged to about 1e-9).

    Raises ValueError for d ≠ 2, and when exp(−U) has not vanished at the edge of the grid (it
    then does not measure Z; for U2–U4 with box=None, Z is infinite).
    """
    check_target(target)
    dim = getattr(target, "dim", 2)
    if dim != 2:
        raise ValueError(f"target: log_partition integrates on a 2-D grid, got a target of dimension {dim}")
    spacing = as_float(spacing, "spacing", low=0.0, low_open=True)
    box = getattr(target, "box", None)
    if limit is None:
        limit = box + 15.0 * target.wall if box is not None and hasattr(target, "wall") else 8.0
    limit = as_float(limit, "limit", low=0.0, low_open=True)
    key = (target.name, box, target.wall) if hasattr(target, "_fn") else None
    if key is not None:
        return _cached_log_partition(key, limit, spacing)
    return _log_partition(target, limit, spacing)


@functools.lru_cache(maxsize=32)
def _cached_log_partition(key, limit, spacing):
    from .targets import get_target

    name, box, wall = key
    return _log_partition(get_target(name, box=box, wall=wall), limit, spacing)


def _log_partition(target, limit, spacing):
    n = int(np.ceil(limit / spacing))
    if n > 5000:
        raise ValueError(f"spacing: {spacing} on [−{limit}, {limit}] needs {(2 * n + 1) ** 2} points; use a larger spacing")
    x = spacing * np.arange(-n, n + 1)                 # nodes at integer multiples of spacing
    log_wx = np.zeros(x.size)
    log_wx[[0, -1]] = np.log(0.5)                      # trapezoid weights ½ at the ends
    rows = max(1, CHUNK // x.size)
    block_lse, peak, edge = [], -np.inf, -np.inf
    for i in range(0, x.size, rows):                   # a block of z₁ rows at a time
        z1, z2 = np.meshgrid(x[i:i + rows], x, indexing="ij")
        neg_U = -np.asarray(target.energy(np.column_stack([z1.ravel(), z2.ravel()])),
                            dtype=np.float64).reshape(z1.shape)
        if np.any(np.isnan(neg_U) | (neg_U == np.inf)):
            raise ValueError("target: energy returned NaN or −inf on the quadrature grid")
        peak = max(peak, float(np.max(neg_U)))
        edge = max(edge, float(np.max(neg_U[:, [0, -1]])))       # z₂ = ±limit
        if i == 0:
            edge = max(edge, float(np.max(neg_U[0])))              # z₁ = −limit
        if i + rows >= x.size:
            edge = max(edge, float(np.max(neg_U[-1])))             # z₁ = +limit
        block_lse.append(_logsumexp(neg_U + log_wx[i:i + rows, None] + log_wx[None, :]))
    if edge - peak > np.log(1e-12):
        raise ValueError(
            f"target: exp(−U) has not vanished at the edge of the grid [−{x[-1]:g}, {x[-1]:g}]² "
            f"(it is {np.exp(edge - peak):.1e} of its peak there): widen `limit`, "
            f"or the density is improper (U2–U4 with box=None have Z = ∞)"
        )
    return _logsumexp(np.array(block_lse)) + 2.0 * np.log(spacing)


def _target_log_z(target, log_z):
    if log_z is not None:
        return as_float(log_z, "log_z")
    if getattr(target, "log_z", None) is not None:
        return float(target.log_z)
    return log_partition(target)


def kl_divergence(params, target, n, rng=None, log_z=None):
    """KL(q_K ‖ p) in nats from n fresh samples, with its Monte-Carlo standard error.

    KL = E_q[log q_K(z) + U(z)] + log Z; log Z is ``log_z`` if given, else the target's own
    ``log_z`` attribute if it has one, else ``log_partition(target)`` (2-D only).

    Returns
    -------
    (kl, stderr) : floats; stderr = std(log q + U)/√n.
    """
    params, K, d = check_params(params)
    check_target(target, dim=d)
    n = as_int(n, "n", minimum=2)
    lz = _target_log_z(target, log_z)
    z, log_q = sample(params, n, rng)
    v = log_q + _energies(target, z)
    if not np.all(np.isfinite(v)):
        raise ValueError("target: energy returned NaN or infinite values at samples of the flow")
    return float(np.mean(v) + lz), float(np.std(v, ddof=1) / np.sqrt(n))


def importance_log_z(params, target, n, rng=None):
    """Importance-sampling estimate of log Z with q_K as the proposal, and ESS/n of its weights.

    log Ẑ = logsumexp(−U(zᵢ) − log q_K(zᵢ)) − log n,   ESS = (Σwᵢ)²/Σwᵢ²  (computed in logs).
    Works in any dimension.

    Returns
    -------
    (log_z, ess_fraction) : floats, ess_fraction in (0, 1].
    """
    params, K, d = check_params(params)
    check_target(target, dim=d)
    n = as_int(n, "n")
    z, log_q = sample(params, n, rng)
    log_w = -_energies(target, z) - log_q
    if not np.all(np.isfinite(log_w)):
        raise ValueError("target: energy returned NaN or infinite values at samples of the flow")
    lse = _logsumexp(log_w)
    ess = np.exp(2.0 * lse - _logsumexp(2.0 * log_w))
    return float(lse - np.log(n)), float(ess / n)
