"""A researcher's own density as a target: energy only, a log-density, a gradient to check.

planarflow fits any object with ``dim`` and a vectorised ``energy(z) -> (N,)``, z of shape (N, d),
U = −log p + const. A gradient makes training exact and fast:

    grad(z) -> (N, d)                      ∇U, or
    energy_and_grad(z) -> (U, ∇U)          both from one call (used by both engines when present)

Without either, planarflow differentiates the energy by finite differences (differences.py) —
forward ones while it trains, central ones elsewhere — and says so once. ``Target`` builds such an object from functions, from an energy or from a
log-density (as PyMC's ``logp`` or TFP's ``target_log_prob_fn`` are written: log p, not −log p);
``check_target`` compares a hand-written gradient with central differences at points where the
density lives and names the worst coordinate.

The differences themselves are in differences.py.
"""

import warnings

import numpy as np

from .differences import central_gradient, warn_numerical
from .mode import ModeNotFound, check_search_size, find_mode
from .validation import (EPS, MAX_ENTRIES, CheckedTarget, as_array, as_float, as_int, check_points, check_size,
                         describe, has_gradient, make_rng, note_precision, target_dim)


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
        self.dim = as_int(dim, "dim", maximum=MAX_ENTRIES)
        if energy_and_grad is not None:
            if energy is not None or grad is not None or log_density is not None or grad_log_density is not None:
                raise TypeError("energy_and_grad: give it alone (it returns both U and ∇U)")
            if not callable(energy_and_grad):
                raise TypeError(f"energy_and_grad: expected a callable, got {describe(energy_and_grad)}")
        if (energy is None) == (log_density is None) and energy_and_grad is None:
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
        self._energy, self._grad = energy, grad
        self._log_density, self._grad_log_density = log_density, grad_log_density
        self.has_grad = energy_and_grad is not None or grad is not None or grad_log_density is not None
        self._warned = False
        self.identity = f"Target({self.name!r}, dim={self.dim})"

    def __repr__(self):
        how = "hand gradient" if self.has_grad else "finite differences"
        return f"Target(name={self.name!r}, dim={self.dim}, {how})"

    def energy(self, z):
        """U(z) (N,) for z (N, dim)."""
        if self._both is not None:
            return self.energy_and_grad(z)[0]
        if self._energy is not None:
            return self._value(self._energy, z, "energy", 1.0)
        return self._value(self._log_density, z, "log_density", -1.0)

    def grad(self, z):
        """∇U(z) (N, dim): the given gradient, or central differences of the energy."""
        return self.energy_and_grad(z)[1]

    def energy_and_grad(self, z):
        """(U (N,), ∇U (N, dim)) for z (N, dim)."""
        if self._both is not None:
            out = self._both(z)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(f"energy_and_grad: expected it to return a pair (U, ∇U) — U of shape (N,), "
                                f"∇U of shape (N, {self.dim}) — got {describe(out) if not isinstance(out, (tuple, list)) else f'a {type(out).__name__} of {len(out)} items'}")
            n = _rows(z)
            return (self._check(out[0], "energy_and_grad", (n,)),
                    self._check(out[1], "energy_and_grad", (n, self.dim)))
        if self._grad is not None:
            return self.energy(z), self._value(self._grad, z, "grad", 1.0, gradient=True)
        if self._grad_log_density is not None:
            return self.energy(z), self._value(self._grad_log_density, z, "grad_log_density", -1.0, gradient=True)
        warn_numerical(self)
        return central_gradient(self.energy, np.asarray(z, dtype=np.float64), eps=getattr(self, "_value_eps", EPS))

    def _value(self, fn, z, name, sign, gradient=False):
        """What fn returned at z, checked (named ``name``) and with ``sign`` (−1 for log p and ∇log p)."""
        n = _rows(z)
        out = self._check(fn(z), name, (n, self.dim) if gradient else (n,))
        return out if sign > 0 else -out

    def _check(self, value, name, shape):
        note_precision(self, value, name)
        out = real(value, name)
        if out.shape != shape:
            hint = ""
            if len(shape) == 1 and out.size <= 1 < shape[0] or len(shape) == 2 and out.shape == shape[1:]:
                hint = (f"; {name} must be vectorised — take points z of shape (N, d), one a row, and return "
                        f"{'one value a row' if len(shape) == 1 else 'one gradient a row'}; for a function "
                        f"of one point f, pass np.vectorize(f, signature='(d)->({'' if len(shape) == 1 else 'd'})') "
                        f"or, in JAX, jax.vmap(f)")
            raise ValueError(f"{name}: expected shape {shape} for points of shape ({shape[0]}, {self.dim}), "
                             f"got {out.shape}{hint}")
        return out


def _rows(z):
    """The number of points N in z (N, d), for the shape a user's function must return."""
    shape = np.shape(z)
    if len(shape) != 2:
        raise ValueError(f"z: expected points of shape (N, d), got shape {shape}")
    return shape[0]


def real(value, name):
    """What a user's function ``name`` returned, as a float64 array (validation.as_array: a
    TypeError naming it for anything but real numbers — a complex value is never cast to its real
    part). NaN and inf pass: where they are an error, the training loop says so with the point."""
    return as_array(value, name, finite=False, max_abs=None)


class GradientCheck:
    """What ``check_target`` found, coordinate by coordinate: the relative error of the target's
    gradient against central differences (``errors``), the differences' own noise there
    (``noise``: how far differences at steps h and 2h disagree), the worst coordinate with its
    values, and how many points were skipped because the energy or a gradient was not finite.

    ``ok``: the gradient agrees within ``tolerance`` — or within the differences' own noise, when
    that is larger (``limited`` then says the check could not resolve the tolerance: the energy
    has fewer correct digits than the check needs, as a float32 energy has)."""

    def __init__(self, errors, noise, worst, point, analytic, numeric, tolerance, used, skipped, eps):
        self.errors, self.noise, self.worst, self.point = errors, noise, worst, point
        self.analytic, self.numeric, self.tolerance = analytic, numeric, tolerance
        self.used, self.skipped, self.eps = used, skipped, eps
        self.max_error = float(errors[worst])
        bar = np.maximum(tolerance, 3.0 * noise)             # differences are known to ~noise (h vs 2h)
        self.ok = bool(np.all(errors <= bar))
        self.limited = bool(np.any((errors > tolerance) & (errors <= bar)))

    def __repr__(self):
        if self.ok and not self.limited:
            verdict = "agrees with"
        elif self.ok:
            verdict = "agrees, as far as the energy's rounding lets differences tell, with"
        else:
            verdict = "DISAGREES with"
        text = (f"the gradient {verdict} central differences: worst relative error {self.max_error:.2e} in "
                f"coordinate {self.worst} (tolerance {self.tolerance:g}; the differences' own noise there "
                f"{self.noise[self.worst]:.1e}); there, at the point "
                f"{np.array2string(self.point, precision=4, max_line_width=200)}, grad gives {self.analytic:.6g} "
                f"and differences {self.numeric:.6g}")
        if self.limited:
            text += (". The differences are noisier than the tolerance"
                     + (f": the energy is computed in {'float32' if self.eps > 1e-8 else 'low precision'} "
                        f"(rounding {self.eps:.1e}); compute it in float64 to check to {self.tolerance:g}"
                        if self.eps > 1e-15 else ": the energy has few correct digits (an inner solve, "
                        "a Cholesky with jitter?), and no gradient can be checked more closely than that"))
        if self.skipped:
            text += (f". {self.skipped} of {self.used + self.skipped} points were skipped: the energy, the "
                     f"gradient or the differences were not finite there")
        return text


def check_target(target, points=None, n=8, rng=None, tolerance=1e-6):
    """Compare a target's own gradient with central differences of its energy, coordinate by coordinate.

    Parameters
    ----------
    target : object with dim, energy and grad (or energy_and_grad): a gradient of its own to check
    points : optional array (M, dim) where to compare; by default the mode found by
        ``find_mode`` (from the energy alone) and ``n`` draws of its Laplace approximation — where
        the density lives, so that the gradient is neither zero nor astronomically large there;
        if no mode is found, ``n`` standard normal draws
    tolerance : float in (0, 1], the largest relative error called agreement

    Points where the energy, the gradient or the differences are not finite are skipped, and the
    result says how many (``fit`` copes with such points too); if none is left, a ValueError.
    The differences' own error is measured by repeating them at twice the step (``noise``): where
    it exceeds the tolerance — an energy in float32, or one through an inner solve — agreement
    within it is reported as such, not as a disagreement.

    Returns
    -------
    GradientCheck with ``ok``, ``errors`` (d,), ``noise`` (d,), ``worst`` (a coordinate index),
    ``skipped`` and a readable repr. Each coordinate's error is rel_error over the points used:
    max|a − b| / max(1e-8, max(|a| + |b|)).
    """
    dim = target_dim(target)
    if not has_gradient(target):
        raise TypeError("target: it has no gradient of its own (grad, energy_and_grad or grad_log_density) to "
                        "check — planarflow differentiates such an energy itself, by finite differences")
    tolerance = as_float(tolerance, "tolerance", low=0.0, high=1.0, low_open=True)
    rng = make_rng(rng)
    checked = CheckedTarget(target, dim, finite=False)
    if points is None:
        n = as_int(n, "n", maximum=MAX_ENTRIES)
        check_size("n", n + 1, 2 * dim + 1, dim)
        # the mode from the energy alone (the gradient is what is checked), unless its Hessian by
        # second differences is too large for this d; then from the gradient; then none
        search = next((s for s, grad in ((EnergyOnly(checked), False), (checked, True))
                       if _fits(lambda: check_search_size(dim, grad))), None)
        with np.errstate(all="ignore"):
            try:
                if search is None:
                    raise ModeNotFound("too large a dimension for a mode search")
                mode = find_mode(search)
                points = np.vstack([mode.x, mode.x + rng.standard_normal((n, dim)) @ mode.scale.T])
            except ModeNotFound:
                points = rng.standard_normal((n + 1, dim))
    points = check_points(points, "points", dim)
    check_size("points", points.shape[0], 2 * dim + 1, dim)
    with np.errstate(all="ignore"):
        U, analytic = checked.energy_and_grad(points)
        _, numeric = central_gradient(checked.energy, points, eps=checked.eps)
        _, numeric2 = central_gradient(checked.energy, points, eps=checked.eps, widen=2.0)
    keep = np.isfinite(U) & np.all(np.isfinite(analytic) & np.isfinite(numeric) & np.isfinite(numeric2), axis=1)
    if not keep.any():
        raise ValueError(f"points: the energy, its gradient or its differences are not finite at any of the "
                         f"{points.shape[0]} points; pass points where the density is positive")
    a, b, b2, points = analytic[keep], numeric[keep], numeric2[keep], points[keep]
    scale = np.maximum(1e-8, (np.abs(a) + np.abs(b)).max(axis=0))
    errors = np.abs(a - b).max(axis=0) / scale
    noise = np.abs(b - b2).max(axis=0) / scale
    worst = int(np.argmax(errors / np.maximum(tolerance, 3.0 * noise)))
    row = int(np.argmax(np.abs(a - b)[:, worst]))
    return GradientCheck(errors, noise, worst, points[row], float(a[row, worst]), float(b[row, worst]),
                         tolerance, int(keep.sum()), int((~keep).sum()), checked.eps)


def _fits(check):
    """Whether a size check passes."""
    try:
        check()
        return True
    except ValueError:
        return False


class EnergyOnly:
    """A target's energy alone, its gradient by central differences (check_target's reference)."""

    has_grad = False

    def __init__(self, target):
        self.target, self.dim, self.name = target, target.dim, getattr(target, "name", "target")

    @property
    def eps(self):
        return self.target.eps

    def energy(self, z):
        return self.target.energy(z)

    def energy_and_grad(self, z, typical=None):
        return central_gradient(self.target.energy, z, typical, self.target.eps)

    def grad(self, z):
        return self.energy_and_grad(z)[1]
