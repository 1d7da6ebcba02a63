"""A researcher's own density as a target: energy only, a log-density, a gradient to check.

planarflow fits any object with ``dim`` and a vectorised ``energy(z) -> (N,)``, z of shape (N, d),
U = −log p + const. A gradient makes training exact and fast:

    grad(z) -> (N, d)                      ∇U, or
    energy_and_grad(z) -> (U, ∇U)          both from one call (used by both engines when present)

Without either, planarflow differentiates the energy by finite differences — forward ones while it
trains (``forward_gradient``), central ones elsewhere (``central_gradient``) — and says so once. ``Target`` builds such an object from functions, from an energy or from a
log-density (as PyMC's ``logp`` or TFP's ``target_log_prob_fn`` are written: log p, not −log p);
``check_target`` compares a hand-written gradient with central differences at points where the
density lives and names the worst coordinate.

Central differences (``../shared/docs/reference.md`` §13):

    ∂U/∂zᵢ ≈ (U(z + hᵢeᵢ) − U(z − hᵢeᵢ)) / (2hᵢ),    hᵢ = ε^{1/3}·sᵢ^{2/3}·max(|zᵢ|, sᵢ)^{1/3}

with ε = 2.2e-16 (so ε^{1/3} ≈ 6e-6) and sᵢ the coordinate's spread — the length over which U
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
tools/posteriors.py, at most 2e-5 of the gradient's size, where a step's Monte-Carlo noise is of the
gradient's own size — the fits and their estimates agree with central differences' to the third
digit, in a half to two thirds of the time when the energy is costly. Where ∇U is differenced again
(the Hessian of ``find_mode``) or compared with a hand gradient (``check_target``), central
differences are kept: there their error is what is measured.

The shifted copies of every point go to the energy together, in calls of about 4000 points, so a
vectorised energy costs d + 1 (or 2d + 1) evaluations a point, not that many Python calls.
"""

import warnings

import numpy as np

from .validation import as_array, as_int, check_points, describe, make_rng

EPS = np.finfo(np.float64).eps
STEP = EPS ** (1.0 / 3.0)            # ≈ 6.1e-6: central differences' step, relative
FORWARD_STEP = EPS ** 0.5            # ≈ 1.5e-8: forward differences' (training's) step, relative
CHUNK_POINTS = 4096                  # shifted points per energy call (measured: an energy that loops over
                                     # its data in Python, a GARCH recursion, runs 25% faster than in calls of
                                     # 2048; vectorised ones run alike; one of 1000 data makes temporaries
                                     # of 4096 × 1000 floats, 33 MB)


class NumericalGradientWarning(UserWarning):
    """A target has no gradient: planarflow differentiates its energy by finite differences."""


def central_gradient(energy, z, typical=None):
    """∇U at every row of z (N, d) by central differences of the vectorised ``energy``.

    ``typical`` (d,) is each coordinate's spread sᵢ (default 1): hᵢ = ε^{1/3}·sᵢ^{2/3}·max(|zᵢ|, sᵢ)^{1/3}.
    Returns (U (N,), ∇U (N, d)); U is evaluated at z itself too (one more point a row).
    """
    typical = np.ones(z.shape[1]) if typical is None else typical
    h = (z + STEP * np.cbrt(typical ** 2 * np.maximum(np.abs(z), typical))) - z     # (N, d), represented
    U, up, down = shifted_energies(energy, z, h, central=True)
    return U, (up - down) / (2.0 * h)


def forward_gradient(energy, z, typical=None):
    """∇U at every row of z (N, d) by forward differences, the training's (see above):
    hᵢ = ε^{1/2}·sᵢ^{1/2}·max(|zᵢ|, sᵢ)^{1/2}. Returns (U (N,), ∇U (N, d))."""
    typical = np.ones(z.shape[1]) if typical is None else typical
    h = (z + FORWARD_STEP * np.sqrt(typical * np.maximum(np.abs(z), typical))) - z  # (N, d), represented
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


class Target:
    """A target from functions: ``Target(dim, energy)``, ``Target(dim, energy, grad)``,
    ``Target(dim, energy_and_grad=f)`` or ``Target(dim, log_density=logp)`` (optionally
    ``grad_log_density``).

    Parameters
    ----------
    dim : int ≥ 1, the dimension d of z
    energy : callable, z (N, d) -> (N,), U = −log p + const (vectorised over the rows)
    grad : optional callable, z (N, d) -> (N, d), ∇U; without it, finite differences
    energy_and_grad : callable z -> (U, ∇U), instead of energy and grad, when both come from
        the same computation (planarflow then calls it once a step)
    log_density : callable z (N, d) -> (N,), log p + const, instead of ``energy``
    grad_log_density : optional callable, ∇ log p, with ``log_density``
    name : optional text for progress lines and messages
    log_z : optional float, log ∫ e^{−U}, when known (the KL then needs no estimate)

    The functions may return lists or arrays; planarflow checks shapes and values where it calls
    them. Without a gradient the first gradient planarflow takes warns once
    (NumericalGradientWarning): each then costs d + 1 energy evaluations a point in training
    (forward differences), 2d + 1 elsewhere (central differences, as ``grad`` gives).
    """

    def __init__(self, dim, energy=None, grad=None, *, energy_and_grad=None, log_density=None,
                 grad_log_density=None, name=None, log_z=None):
        self.dim = as_int(dim, "dim")
        if energy_and_grad is not None:
            if energy is not None or grad is not None or log_density is not None or grad_log_density is not None:
                raise TypeError("energy_and_grad: give it alone (it returns both U and ∇U)")
            if not callable(energy_and_grad):
                raise TypeError(f"energy_and_grad: expected a callable, got {describe(energy_and_grad)}")
            energy = lambda z: energy_and_grad(z)[0]      # noqa: E731
            grad = lambda z: energy_and_grad(z)[1]        # noqa: E731
        if (energy is None) == (log_density is None):
            raise TypeError("energy, log_density: expected exactly one of them (U = −log p + const, "
                            "or log p + const)")
        if energy is None and grad is not None:
            raise TypeError("grad: with log_density, pass grad_log_density (∇ log p) instead")
        if energy is not None and grad_log_density is not None:
            raise TypeError("grad_log_density: with energy, pass grad (∇U) instead")
        for arg, value in (("energy", energy), ("grad", grad), ("log_density", log_density),
                           ("grad_log_density", grad_log_density)):
            if value is not None and not callable(value):
                raise TypeError(f"{arg}: expected a callable, got {describe(value)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a string or None, got {describe(name)}")
        self.name = name or "target"
        self.log_z = None if log_z is None else float(as_array(log_z, "log_z", ndim=0))
        self._both = energy_and_grad
        if energy is not None:
            self._energy, self._grad = energy, grad
        else:
            self._energy = lambda z: -real(log_density(z), "log_density")
            self._grad = None if grad_log_density is None else (
                lambda z: -real(grad_log_density(z), "grad_log_density"))
        self.has_grad = self._grad is not None
        self._warned = False
        self.identity = f"Target({self.name!r}, dim={self.dim})"

    def __repr__(self):
        how = "hand gradient" if self.has_grad else "finite differences"
        return f"Target(name={self.name!r}, dim={self.dim}, {how})"

    def energy(self, z):
        """U(z) (N,) for z (N, dim)."""
        return real(self._energy(z), "energy")

    def grad(self, z):
        """∇U(z) (N, dim): the given gradient, or central differences of the energy."""
        return self.energy_and_grad(z)[1]

    def energy_and_grad(self, z):
        """(U (N,), ∇U (N, dim)) for z (N, dim)."""
        if self._both is not None:
            U, g = self._both(z)
            return real(U, "energy_and_grad"), real(g, "energy_and_grad")
        if self.has_grad:
            return self.energy(z), real(self._grad(z), "grad")
        warn_numerical(self)
        return central_gradient(self.energy, np.asarray(z, dtype=np.float64))


def real(value, name):
    """What a user's function ``name`` returned, as a float64 array (validation.as_array: a
    TypeError naming it for anything but real numbers — a complex value is never cast to its real
    part). NaN and inf pass: where they are an error, the training loop says so with the point."""
    return as_array(value, name, finite=False, max_abs=None)


def warn_numerical(target):
    """Say once per target that its gradient comes from finite differences."""
    if not getattr(target, "_warned", False):
        d = target.dim
        warnings.warn(f"{getattr(target, 'name', 'target')} has no gradient: planarflow differentiates its "
                      f"energy by finite differences (in training forward ones, {d + 1} energy evaluations "
                      f"a point in d = {d}; central ones, {2 * d + 1}, where the mode is found). "
                      f"A hand-written grad is faster; check one with planarflow.check_target.",
                      NumericalGradientWarning, stacklevel=4)
        try:
            target._warned = True
        except AttributeError:
            pass


class GradientCheck:
    """What ``check_target`` found: per coordinate, the relative error of the target's gradient
    against central differences, and the worst coordinate with its values."""

    def __init__(self, errors, worst, point, analytic, numeric, tolerance):
        self.errors, self.worst, self.point = errors, worst, point
        self.analytic, self.numeric, self.tolerance = analytic, numeric, tolerance
        self.max_error = float(errors[worst])
        self.ok = bool(self.max_error <= tolerance)

    def __repr__(self):
        verdict = "agrees with" if self.ok else "DISAGREES with"
        return (f"the gradient {verdict} central differences: worst relative error {self.max_error:.2e} "
                f"in coordinate {self.worst} (tolerance {self.tolerance:g}); there, at the point "
                f"{np.array2string(self.point, precision=4, max_line_width=200)}, grad gives "
                f"{self.analytic:.6g} and differences {self.numeric:.6g}")


def check_target(target, points=None, n=8, rng=None, tolerance=1e-6):
    """Compare a target's gradient with central differences of its energy, coordinate by coordinate.

    Parameters
    ----------
    target : object with dim, energy and grad (or energy_and_grad)
    points : optional array (M, dim) where to compare; by default the mode found by
        ``find_mode`` (from the energy alone) and ``n`` draws of its Laplace approximation — where
        the density lives, so that the gradient is neither zero nor astronomically large there;
        if no mode is found, ``n`` standard normal draws
    tolerance : the largest relative error called agreement

    Returns
    -------
    GradientCheck with ``ok``, ``errors`` (d,), ``worst`` (a coordinate index) and a readable repr.
    Each coordinate's error is rel_error over the points: max|a − b| / max(1e-8, max(|a| + |b|)).
    """
    from .mode import ModeNotFound, find_mode
    from .validation import CheckedTarget, target_dim

    checked = CheckedTarget(target, target_dim(target))
    if not (callable(getattr(target, "grad", None)) or callable(getattr(target, "energy_and_grad", None))):
        raise TypeError("target: has no grad or energy_and_grad to check")
    rng = make_rng(rng)
    tolerance = float(as_array(tolerance, "tolerance", ndim=0))
    if points is None:
        n = as_int(n, "n")
        energy_only = EnergyOnly(checked)
        try:
            mode = find_mode(energy_only)
            points = np.vstack([mode.x, mode.x + rng.standard_normal((n, checked.dim)) @ mode.scale.T])
        except ModeNotFound:
            points = rng.standard_normal((n + 1, checked.dim))
    points = check_points(points, "points", checked.dim)
    _, analytic = checked.energy_and_grad(points)
    _, numeric = central_gradient(checked.energy, points)
    if not np.all(np.isfinite(numeric)):
        raise ValueError("points: the energy is not finite around some of them; pass points where it is")
    diff = np.abs(analytic - numeric).max(axis=0)
    errors = diff / np.maximum(1e-8, (np.abs(analytic) + np.abs(numeric)).max(axis=0))
    worst = int(np.argmax(errors))
    row = int(np.argmax(np.abs(analytic - numeric)[:, worst]))
    return GradientCheck(errors, worst, points[row], float(analytic[row, worst]), float(numeric[row, worst]),
                         tolerance)


class EnergyOnly:
    """A target's energy alone, its gradient by central differences (check_target's reference)."""

    has_grad = False

    def __init__(self, target):
        self.target, self.dim, self.name = target, target.dim, getattr(target, "name", "target")

    def energy(self, z):
        return self.target.energy(z)

    def energy_and_grad(self, z, typical=None):
        return central_gradient(self.target.energy, z, typical)

    def grad(self, z):
        return self.energy_and_grad(z)[1]
