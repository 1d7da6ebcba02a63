"""A start at the mode: find where a user's density peaks and how wide it is there (Laplace).

Adam moves each parameter by about lr a step, whatever the target's units, so a flow that starts
at N(0, I) cannot reach a posterior 6·10⁴ from the origin, nor resolve one 10⁻³ wide. Newton's
method does not care about units: its step −H⁻¹∇U is the same whether a coordinate is measured
in dollars or in thousands of dollars. So ``fit`` first finds a mode x* of U and the Laplace
approximation N(x*, H⁻¹) there, H = ∇²U(x*), and trains the flow in that frame (``Frame``):

    x = x* + R·y,    R = cholesky(H⁻¹)  (lower-triangular),    Ũ(y) = U(x* + R·y)

in which the target is close to N(0, I) — every coordinate in units of its own spread, every
correlation removed to first order. The flow's planar layers start at the identity and its
learnable base (base.py) at N(0, I) in y, i.e. at the Laplace approximation in x; at the
end the frame is folded into the base: μ ← x* + R·μ, A ← R·A (still lower-triangular).

Newton with a line search, for U with gradient g and Hessian H at x:

    scale:   D = diag(|Hᵢᵢ|)^{−1/2}          (Jacobi: each coordinate in units of its curvature)
    step:    p = −D·V·|Λ|⁻¹·Vᵀ·D·g,   D·H·D = V·Λ·Vᵀ
    search:  the largest α ∈ {1, ½, ¼, …} with U(x + α·p) finite and ≤ U(x) + 10⁻⁴·α·gᵀp
    stop:    the Newton decrement −gᵀp < 10⁻¹⁰ (nats) with D·H·D positive definite

|Λ| (eigenvalues by absolute value, "saddle-free" Newton) makes p a descent direction where H
is not positive definite, far from the mode. The Hessian comes from central differences of the
gradient at the 2d points x ± hᵢeᵢ in one call, with hᵢ = 10⁻⁴ of the coordinate's current
spread 1/√Hᵢᵢ (so the step, too, is in the coordinate's own units), then symmetrised; for an
energy-only target, from second differences of the energy at 4d² points (``_hessian``). The line search evaluates all its trial points in
one call of the vectorised energy.

A target with no isolated mode — U unbounded below (an improper density), flat in some direction
(a ridge of modes, like the paper's U2–U4 inside their box), or a search that does not converge —
raises ModeNotFound with what was seen; ``fit`` then says so and starts at N(0, I) instead.
"""

import numpy as np

from .. import base
from .differences import directional_gradient
from .validation import MAX_ENTRIES, MAX_LOG_SIGMA, as_array


MAX_ITER = 200
DECREMENT_TOL = 1e-10        # nats: half the predicted decrease left at the mode
FLAT = 1e-10                 # an eigenvalue of D·H·D this small next to the largest: a flat direction
HESSIAN_STEP = 1e-4          # of each coordinate's spread
EPS = np.finfo(np.float64).eps


class ModeNotFound(ValueError):
    """No isolated mode: the density is improper or flat in some direction, or the search failed."""


class Mode:
    """A mode x* of U and the Laplace approximation N(x*, H⁻¹) there.

    Attributes: ``x`` (d,), ``energy`` U(x*), ``hessian`` (d, d), ``cov`` = H⁻¹, ``sd`` (d,),
    ``scale`` = cholesky(H⁻¹) (d, d) lower-triangular, ``iterations``, ``evaluations`` (energy
    calls, counting each point).
    """

    def __init__(self, x, energy, hessian, cov, scale, iterations, evaluations):
        self.x, self.energy, self.hessian, self.cov, self.scale = x, energy, hessian, cov, scale
        self.sd = np.sqrt(np.diag(cov))
        self.iterations, self.evaluations = iterations, evaluations

    def __repr__(self):
        return (f"Mode at {np.array2string(self.x, precision=5, max_line_width=200)} (U = {self.energy:.6g}), "
                f"Laplace sd {np.array2string(self.sd, precision=3, max_line_width=200)}, "
                f"{self.iterations} Newton steps")


def check_mode(mode, dim, name="start"):
    """The (x*, R) of a Mode as fit uses it, checked: x (dim,) finite; scale (dim, dim) finite,
    lower-triangular with a positive diagonal — a Cholesky factor of the covariance, as find_mode
    gives. A Mode whose attributes were replaced by hand (a symmetric matrix, a negative diagonal,
    NaN, another size) is refused by name instead of trained on."""
    if not isinstance(mode, Mode):
        raise TypeError(f"{name}: expected a planarflow.Mode, got {type(mode).__name__}")
    x = as_array(getattr(mode, "x", None), f"{name}.x", shape=(dim,))
    R = as_array(getattr(mode, "scale", None), f"{name}.scale", shape=(dim, dim))
    if np.any(np.triu(R, 1)):
        raise ValueError(f"{name}.scale: expected a lower-triangular matrix R with R·Rᵀ the covariance (as "
                         f"find_mode gives), got non-zero entries above the diagonal; for a covariance C, "
                         f"pass np.linalg.cholesky(C)")
    diag = np.diag(R)
    if not np.all(diag > 0):
        raise ValueError(f"{name}.scale: expected a positive diagonal (a Cholesky factor), got "
                         f"{diag.min():.4g} in row {int(np.argmin(diag))}")
    if np.max(np.abs(np.log(diag))) > MAX_LOG_SIGMA:
        raise ValueError(f"{name}.scale: expected diagonal entries within e^±{MAX_LOG_SIGMA:g}, got "
                         f"{diag[np.argmax(np.abs(np.log(diag)))]:.3g}")
    return x.copy(), R.copy()


def check_search_size(dim, has_grad, name="target.dim"):
    """Refuse, before any work, a mode search whose Hessian would not fit in MAX_ENTRIES numbers:
    with a gradient, 2d difference points of d numbers each; without one, 4d² points."""
    points = 2 * dim if has_grad else 4 * dim * dim
    if points * dim > MAX_ENTRIES:
        how = "2d points" if has_grad else "4d² points (second differences of an energy without a gradient)"
        raise ValueError(f"{name}: the mode search's Hessian in d = {dim} needs {how} of d numbers, "
                         f"{points * dim:.3g} in all, more than the {MAX_ENTRIES:.0e} allowed"
                         + ("" if has_grad else "; give the target a gradient") +
                         "; or start the flow at N(0, I) without a mode search (fit(..., start='standard'))")


def _hessian(target, x, spread, U):
    """H at x, symmetrised: central differences of the gradient at x ± hᵢeᵢ, hᵢ = 10⁻⁴·spreadᵢ —
    or, without a gradient, second differences of the energy itself,

        Hᵢⱼ ≈ (U(x + hᵢeᵢ + hⱼeⱼ) − U(x + hᵢeᵢ − hⱼeⱼ) − U(x − hᵢeᵢ + hⱼeⱼ) + U(x − hᵢeᵢ − hⱼeⱼ))/(4hᵢhⱼ)

    with hᵢ = spreadᵢ·(ε·(1 + |U|))^{1/4}: U is known to about ε·|U|, which the difference divides
    by h², so h grows with |U| (10⁻⁴ spreads for |U| ≈ 1, 0.1 spread for an energy of 10¹²)."""
    d = x.size
    i = np.arange(d)
    if getattr(target, "has_grad", True):
        h = (x + HESSIAN_STEP * spread) - x
        pts = np.repeat(x[None], 2 * d, axis=0)
        pts[i, i] += h
        pts[d + i, i] -= h
        Ux, G = target.energy_and_grad(pts, spread)
        with np.errstate(all="ignore"):                   # (a value that is not finite is named below)
            H = (G[:d] - G[d:]) / (2.0 * h[:, None])      # row i: ∂∇U/∂xᵢ
        ok, count = np.all(np.isfinite(Ux)) and np.all(np.isfinite(H)), 2 * d
    else:
        h = (x + spread * (getattr(target, "eps", EPS) * (1.0 + abs(U))) ** 0.25) - x
        pts = np.repeat(np.repeat(x[None, None], d, axis=0), d, axis=1)[None].repeat(4, axis=0)   # (4, d, d, d)
        for k, (a, b) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
            pts[k, i, :, i] += a * h[:, None]             # ± hᵢ on coordinate i (row i of each block)
            pts[k, :, i, i] += b * h[:, None]             # ± hⱼ on coordinate j
        V = target.energy(pts.reshape(-1, d)).reshape(4, d, d)
        with np.errstate(all="ignore"):
            H = (V[0] - V[1] - V[2] + V[3]) / (4.0 * h[:, None] * h[None, :])
        ok, count = np.all(np.isfinite(H)), 4 * d * d
    if not ok:
        raise ModeNotFound(f"the energy or its gradient is not finite within a few steps hᵢ of "
                           f"{np.array2string(x, precision=4)}")
    return 0.5 * (H + H.T), count


def _scaled_eigen(H, spread):
    """D = diag(|Hᵢᵢ|)^{−1/2} (the spread where Hᵢᵢ = 0) and the eigenpairs of D·H·D."""
    diag = np.abs(np.diag(H))
    D = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), spread)
    lam, V = np.linalg.eigh(D[:, None] * H * D[None, :])
    return D, lam, V


def find_mode(target, x0=None, max_iter=MAX_ITER):
    """Newton's method with a line search for a mode of target.energy, and the Laplace
    approximation there.

    Parameters
    ----------
    target : a checked target (validation.CheckedTarget) with dim, energy and
        energy_and_grad(z, typical) — the gradient analytic or by central differences
    x0 : optional start (d,), default the origin; it must be a point where U is finite

    Returns
    -------
    Mode. Raises ModeNotFound with what went wrong when there is no isolated mode or the search
    fails, and ValueError when U(x0) is not finite.
    """
    d = target.dim
    x = np.zeros(d) if x0 is None else np.array(x0, dtype=np.float64)
    U, g = target.energy_and_grad(x[None], np.ones(d))
    U, g = float(U[0]), g[0]
    if not (np.isfinite(U) and np.all(np.isfinite(g))):
        raise ModeNotFound(f"the energy or its gradient is not finite at the start {np.array2string(x, precision=4)} "
                           f"(U = {U}); pass a start x0 where the density is positive")
    spread = np.maximum(np.abs(x), 1.0)
    start, U_start, far = x.copy(), U, 1e8 * np.max(spread)       # far: 10⁸ of the start's own scale
    evaluations = 1
    alphas = 0.5 ** np.arange(60)
    for it in range(1, max_iter + 1):
        H, n = _hessian(target, x, spread, U)
        evaluations += n
        D, lam, V = _scaled_eigen(H, spread)
        top = np.max(np.abs(lam))
        if not np.isfinite(top) or top == 0.0:
            raise ModeNotFound(f"the energy is flat around {np.array2string(x, precision=4)} (its Hessian is 0): "
                               f"no isolated mode" + (" — with a non-zero gradient, an improper density"
                                                      if np.any(g != 0) else ""))
        p = -D * (V @ ((V.T @ (D * g)) / np.maximum(np.abs(lam), FLAT * top)))
        decrement = float(-g @ p)
        if decrement < DECREMENT_TOL:
            if lam.min() > FLAT * top:
                break
            raise ModeNotFound(f"the energy is flat in some direction at {np.array2string(x, precision=4)} "
                               f"(Hessian eigenvalues from {lam.min():.2e} to {top:.2e} in scaled units): no "
                               f"isolated mode — a ridge of modes, or an improper density")
        trial = x[None] + alphas[:, None] * p[None]
        with np.errstate(all="ignore"):
            U_trial = target.energy(trial)
        evaluations += alphas.size
        ok = np.isfinite(U_trial) & (U_trial <= U - 1e-4 * alphas * decrement)
        if not ok.any():
            raise ModeNotFound(f"the line search found no lower energy from {np.array2string(x, precision=4)} "
                               f"(U = {U:.6g}, predicted decrease {decrement:.2e}): the gradient may be wrong "
                               f"(planarflow.check_target compares it with differences)")
        j = int(np.argmax(ok))
        x = trial[j]
        if np.max(np.abs(x)) > 1e100 or U_trial[j] < -1e300 or (lam.min() < 0 and np.max(np.abs(x - start)) > far):
            # downhill with negative curvature ever further out: no mode ahead
            raise ModeNotFound(f"the energy keeps decreasing as |x| grows (from U = {U_start:.6g} at the start to "
                               f"{U_trial[j]:.6g} at {np.array2string(x, precision=4, max_line_width=200)}, "
                               f"curving downwards): the density has no mode and looks improper (no "
                               f"normalising constant). Check the energy's sign (U = −log p) and its priors")
        U, g = target.energy_and_grad(x[None], spread)
        U, g = float(U[0]), g[0]
        evaluations += 1
        if not (np.isfinite(U) and np.all(np.isfinite(g))):
            raise ModeNotFound(f"the gradient is not finite at {np.array2string(x, precision=4)}")
        spread = np.where(np.diag(H) > 0, D, spread)       # 1/√Hᵢᵢ: each coordinate's current spread
    else:
        raise ModeNotFound(f"Newton's method did not converge in {max_iter} steps (last point "
                           f"{np.array2string(x, precision=4)}, U = {U:.6g})")
    return _laplace(target, x, U, D, it, evaluations)


def _laplace(target, x, U, spread, iterations, evaluations):
    """The Laplace approximation at the mode x: the Hessian again, its steps scaled by the spreads
    just found, and from it H⁻¹ and its Cholesky factor (in the Jacobi-scaled frame, for accuracy)."""
    H, n = _hessian(target, x, spread, U)
    D, lam, V = _scaled_eigen(H, spread)
    if lam.min() <= FLAT * np.max(np.abs(lam)):
        raise ModeNotFound(f"the Hessian at the mode {np.array2string(x, precision=4)} is not positive "
                           f"definite: no isolated mode")
    cov_scaled = (V / lam) @ V.T                                # (D·H·D)⁻¹
    cov = D[:, None] * cov_scaled * D[None, :]                  # H⁻¹
    scale = D[:, None] * np.linalg.cholesky(0.5 * (cov_scaled + cov_scaled.T))
    return Mode(x, U, H, cov, scale, iterations, evaluations + n)


class Frame:
    """A target seen in the Laplace frame: Ũ(y) = U(x* + R·y), ∇Ũ(y) = Rᵀ·∇U(x* + R·y).

    ``log_det`` = log det R = Σ log Rᵢᵢ: densities in y and x differ by it, so a loss computed in
    the frame is the loss in x plus log det R, and fit reports the latter.

    With ``directions`` = m > 0 (fit's choice for an energy without a gradient), the gradient is
    differences.directional_gradient's: m random ±1 directions a point around the quadratic ½‖y‖²,
    drawn for each flow's batch of ``block`` points from a generator keyed by (``seed``, the step,
    the batch's place in the step) — the run sets the step — so that both engines (one call a
    member, or one for all) and a resumed run see the same ones.
    """

    def __init__(self, target, center, R):
        self.target, self.center, self.R = target, center, R
        self.dim = target.dim
        self.name = getattr(target, "name", "target")
        self.log_det = float(np.sum(np.log(np.diag(R))))
        target.typical = frame_typical(R)            # finite differences in x, their steps scaled to the frame
        self.directions, self.seed, self.step, self.used, self.block = 0, 0, 0, 0, 1
        self._pending = None

    def to_x(self, y):
        return self.center + y @ self.R.T

    def at_step(self, step):
        """A new step: its directions start afresh."""
        self.step, self.used = step, 0

    def _directional(self, y):
        N, d = y.shape
        V = np.empty((self.directions, N, d))
        for start in range(0, N, self.block):                # one generator a flow's batch
            rng = np.random.default_rng([self.seed, self.step, self.used])
            self.used += 1
            V[:, start:start + self.block] = rng.integers(0, 2, size=V[:, start:start + self.block].shape) * 2.0 - 1.0
        U, g = directional_gradient(lambda pts: self.target.values(self.to_x(pts)), y, V, self.target.eps)
        self._pending = (y, g)
        return U, g

    def energy(self, y):
        if self.directions:
            return self._directional(y)[0]
        return self.target.energy(self.to_x(y))

    def grad(self, y):
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is y:
            return pending[1]
        if self.directions:
            return self._directional(y)[1]
        return self.target.grad(self.to_x(y)) @ self.R

    def energy_and_grad(self, y):
        if self.directions:
            return self._directional(y)
        U, g = self.target.energy_and_grad(self.to_x(y))
        return U, g @ self.R

    def fold(self, params):
        """The flow trained in the frame, expressed in x: μ ← x* + R·μ, A ← R·A (arrays with or
        without a leading member axis; R·A is lower-triangular with diagonal Rᵢᵢ·σᵢ)."""
        RA = self.R @ base.base_matrix(params["log_sigma"], params["lower"])
        return dict(params, mu=self.center + params["mu"] @ self.R.T,
                    log_sigma=np.log(np.diagonal(RA, axis1=-2, axis2=-1)), lower=np.tril(RA, -1))


def frame_typical(R):
    """Each x coordinate's typical size in a frame: the length of its row of R (its spread)."""
    return np.sqrt((R * R).sum(axis=1))
