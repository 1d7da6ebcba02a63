"""Numerical gradients of a user's energy: central and forward differences, steps scaled to each
coordinate, every shifted point sent to the vectorised energy in large calls.

Central differences (``../shared/docs/reference.md`` §13):

    ∂U/∂zᵢ ≈ (U(z + hᵢeᵢ) − U(z − hᵢeᵢ)) / (2hᵢ),    hᵢ = ε^{1/3}·sᵢ^{2/3}·max(|zᵢ|, sᵢ)^{1/3}

with ε the energy's own rounding — 2.2e-16 in float64 (so ε^{1/3} ≈ 6e-6), 1.2e-7 if it
returns float32 — and sᵢ the coordinate's spread — the length over which U
changes by about one nat (1 unless known; ``fit`` knows it from the Laplace start). The error is
the truncation, O((hᵢ/sᵢ)²) relative, plus rounding: U itself is only known to about the change
caused by moving zᵢ by ε·max(|zᵢ|, sᵢ), O(ε·max(|zᵢ|, sᵢ)/hᵢ) relative. This hᵢ balances the two:
for |zᵢ| ≲ sᵢ it is the textbook ε^{1/3}·sᵢ with an error of about ε^{2/3} ≈ 4e-11, and a
coordinate far from the origin next to its spread (a coefficient of 6·10⁴ ± 10⁴) gets a longer
step instead of one that its own rounding would swamp. The step used is (z + h) − z, the one
actually represented.

Training uses forward differences instead, at half the cost:

    ∂U/∂zᵢ ≈ (U(z + hᵢeᵢ) − U(z)) / hᵢ,    hᵢ = ε^{1/2}·sᵢ^{1/2}·max(|zᵢ|, sᵢ)^{1/2}

— d + 1 evaluations a point instead of 2d + 1, and U(z) is one of them, which the loss needs
anyway. The same balance of truncation, O(hᵢ/sᵢ), against rounding gives this hᵢ and an error of
about ε^{1/2} ≈ 1.5e-8 relative: measured at the flow's points on the posteriors of
lab/posteriors.py, at most 2e-5 of the gradient's size, where a step's Monte-Carlo noise is of the
gradient's own size — the fits and their estimates agree with central differences' to the third
digit, in a half to two thirds of the time when the energy is costly. Where ∇U is differenced again
(the Hessian of ``find_mode``) or compared with a hand gradient (``check_target``), central
differences are kept: there their error is what is measured.

The shifted copies of every point go to the energy together, in calls of about 4000 points, so a
vectorised energy costs d + 1 (or 2d + 1) evaluations a point, not that many Python calls.
"""

import warnings

import numpy as np

EPS = np.finfo(np.float64).eps      # float64's rounding; an energy that returns float32 passes its own
STEP = EPS ** (1.0 / 3.0)            # ≈ 6.1e-6: central differences' step, relative
FORWARD_STEP = EPS ** 0.5            # ≈ 1.5e-8: forward differences' (training's) step, relative
CHUNK_POINTS = 4096                  # shifted points per energy call (measured: an energy that loops over
                                     # its data in Python, a GARCH recursion, runs 25% faster than in calls of
                                     # 2048; vectorised ones run alike; one of 1000 data makes temporaries
                                     # of 4096 × 1000 floats, 33 MB)


class NumericalGradientWarning(UserWarning):
    """A target has no gradient: planarflow differentiates its energy by finite differences."""


def central_gradient(energy, z, typical=None, eps=EPS, widen=1.0):
    """∇U at every row of z (N, d) by central differences of the vectorised ``energy``.

    ``typical`` (d,) is each coordinate's spread sᵢ (default 1): hᵢ = ε^{1/3}·sᵢ^{2/3}·max(|zᵢ|, sᵢ)^{1/3},
    with ε the energy's own rounding (``eps``: float64's unless it returns float32); ``widen``
    multiplies every step (check_target compares steps h and 2h to see the differences' own noise).
    Returns (U (N,), ∇U (N, d)); U is evaluated at z itself too (one more point a row).
    """
    typical = np.ones(z.shape[1]) if typical is None else typical
    step = widen * eps ** (1.0 / 3.0)
    h = (z + step * np.cbrt(typical ** 2 * np.maximum(np.abs(z), typical))) - z     # (N, d), represented
    U, up, down = shifted_energies(energy, z, h, central=True)
    return U, (up - down) / (2.0 * h)


def forward_gradient(energy, z, typical=None, eps=EPS):
    """∇U at every row of z (N, d) by forward differences, the training's (see above):
    hᵢ = ε^{1/2}·sᵢ^{1/2}·max(|zᵢ|, sᵢ)^{1/2}. Returns (U (N,), ∇U (N, d))."""
    typical = np.ones(z.shape[1]) if typical is None else typical
    h = (z + np.sqrt(eps) * np.sqrt(typical * np.maximum(np.abs(z), typical))) - z   # (N, d), represented
    U, up, _ = shifted_energies(energy, z, h, central=False)
    return U, (up - U[:, None]) / h


def shifted_energies(energy, z, h, central):
    """U(z), U(z + hᵢeᵢ) and (if ``central``) U(z − hᵢeᵢ) for every row of z (N, d) and coordinate
    i, as (N,), (N, d), (N, d) or None: the 1 + d or 1 + 2d points of each row go to the energy
    together, in calls of about CHUNK_POINTS points."""
    N, d = z.shape
    m = 1 + (2 if central else 1) * d
    U, up = np.empty(N), np.empty((N, d))
    down = np.empty((N, d)) if central else None
    rows = max(1, CHUNK_POINTS // m)
    i = np.arange(d)
    for s in range(0, N, rows):
        zc, hc = z[s:s + rows], h[s:s + rows]
        n = zc.shape[0]
        shifted = np.repeat(zc[None], m, axis=0)                              # (m, n, d)
        shifted[1 + i, :, i] += hc.T                                          # z + hᵢeᵢ
        if central:
            shifted[1 + d + i, :, i] -= hc.T                                  # z − hᵢeᵢ
        values = np.asarray(energy(shifted.reshape(-1, d)), dtype=np.float64).reshape(m, n)
        U[s:s + n] = values[0]
        up[s:s + n] = values[1:d + 1].T
        if central:
            down[s:s + n] = values[d + 1:].T
    return U, up, down


def warn_numerical(target):
    """Say once per target that its gradient comes from finite differences."""
    if not getattr(target, "_warned", False):
        d = target.dim
        warnings.warn(f"{getattr(target, 'name', 'target')} has no gradient: planarflow differentiates its "
                      f"energy by finite differences (central ones, {2 * d + 1} energy evaluations a point, "
                      f"where the mode is found; in training forward ones, {d + 1} a point — or, in d ≥ 16, "
                      f"3 along random directions around the Laplace approximation: fit(differences=...)). "
                      f"A hand-written grad is faster; check one with planarflow.check_target.",
                      NumericalGradientWarning, stacklevel=4)
        try:
            target._warned = True
        except AttributeError:
            pass


# Around the Laplace quadratic, along random directions (fit's default for an energy alone in d ≥ 16).
#
# In the Laplace frame y (x = x* + R·y) the energy is a quadratic plus a remainder:
#
#     Ũ(y) = Ũ* + ½‖y‖² + r(y),      ∇Ũ(y) = y + ∇r(y)
#
# The quadratic's gradient y is exact and free; only ∇r needs the energy. For a direction v with
# E[v vᵀ] = I (here vᵢ = ±1, each with probability ½), E[(∇r·v)·v] = ∇r, so
#
#     ĝ(y) = y + (1/m) Σₖ (∇r·vₖ)·vₖ,    ∇r·v ≈ (Ũ(y + h·v) − Ũ(y))/h − y·v − ½h‖v‖²
#
# (the forward difference of r along v: r(y + hv) − r(y) = Ũ(y + hv) − Ũ(y) − h·y·v − ½h²‖v‖²) is an
# unbiased estimate of ∇Ũ(y) from m + 1 energies a point instead of d + 1, whatever d. Its noise,
# (1/m)·(‖∇r‖²·I + ∇r∇rᵀ − 2·diag(∇r²)), is that of the remainder alone: nothing where the posterior
# is the Laplace approximation, and small next to a step's own Monte-Carlo noise where it is close
# (measured: python -m planarflow benchmark --energy-only). The step h = √ε, the frame's units
# being the posterior's spread.

def directional_gradient(energy, y, directions, eps=EPS):
    """(Ũ (N,), ĝ (N, d)) at the rows of y (N, d) in the Laplace frame from ``directions`` (m, N, d)
    of ±1 entries: the estimate above. ``energy`` takes frame points (n, d)."""
    m, N, d = directions.shape
    h = np.sqrt(eps)
    points = np.concatenate([y[None], y[None] + h * directions]).reshape(-1, d)     # ((m + 1)·N, d)
    values = energy(points).reshape(m + 1, N)
    U = values[0]
    with np.errstate(invalid="ignore", over="ignore"):
        slope = (values[1:] - U) / h - np.einsum("mnd,nd->mn", directions, y) - 0.5 * h * d   # ∇r·vₖ, (m, N)
        return U, y + np.einsum("mn,mnd->nd", slope, directions) / m
