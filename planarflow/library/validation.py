"""Checks at the public boundary: every error names the argument, what was expected and what came.

Each public function (library/api.py) validates its inputs here, once, before any work or
allocation, and then calls the plain lesson code, which trusts them.

The domain of the parameters is where float64 computes a planar flow and its gradients: finite
entries of at most MAX_ABS in size, ‖w‖ ≥ 1e-50 (û grows like 1/‖w‖: at ‖w‖ = 1e-160, ‖w‖²
underflows and û is NaN), and wᵀu ≥ MIN_WTU = −700. Below that, 1 + wᵀû = softplus(wᵀu) ≈
e^{wᵀu} nears the smallest float64, and a sample on the layer's hyperplane wᵀz + b = 0 — where
D = 1 + h'·wᵀû equals softplus(wᵀu) — gets ∂L/∂softplus(wᵀu) ≈ 1/softplus(wᵀu) = ∞. At −700,
1/softplus is about 1e304, which leaves room for a batch's sum (tests/test_edges.py checks
reverse_kl's gradient exactly there). A learnable base has finite μ and lower of at most MAX_ABS
and |log σ| ≤ MAX_LOG_SIGMA.
"""

import math
import numbers
import operator
import warnings

import numpy as np

from .differences import EPS, central_gradient, forward_gradient, warn_numerical

PARAM_KEYS = ("u", "w", "b")
BASE_KEYS = ("mu", "log_sigma", "lower")      # the learnable base x = μ + A·z (base.py)
MAX_LOG_SIGMA = 230.0     # |log σ| of the base: σ within about 1e±100, like every other entry
MIN_WTU = -700.0          # wᵀu below this: numerically singular (see above)
MIN_W_NORM = 1e-50        # ‖w‖ below this: û = u + c·w with c ~ 1/‖w‖² overflows
MAX_ABS = 1e100           # parameters and points: larger entries overflow when squared and summed
MAX_POINT = 1e150         # points in the flow's own space (log_prob, inverse, sample's draws): a flow in the
                          # domain draws beyond 1e100 (a base with σ = e^230), and 1e150² summed over up to
                          # 1e8 coordinates still fits in float64
BLOCK = 512               # points a call of a user's function gets outside training (CheckedTarget.blocks)
MAX_ENTRIES = 10 ** 8     # the largest array (in numbers) a call may be asked to allocate




class LowPrecisionWarning(UserWarning):
    """A target returned values computed in less than float64 (float32, say): differences of its
    energy carry that rounding (planarflow widens its steps to suit), and a fit sees a noisier U."""


def note_precision(owner, value, name):
    """Record in ``owner._value_eps`` the machine epsilon of what a user's function ``name``
    returned, when it is coarser than float64's, and warn once per owner (LowPrecisionWarning)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return
    if not isinstance(dtype, np.dtype):           # another library's array (a torch tensor, say)
        try:
            dtype = np.asarray(value).dtype
        except Exception:                         # (its own conversion is checked where it is used)
            return
    if dtype.kind != "f" or dtype.itemsize >= 8:
        return
    eps = float(np.finfo(dtype).eps)
    if eps > getattr(owner, "_value_eps", EPS):
        try:
            owner._value_eps = eps
        except AttributeError:
            pass
        digits = int(round(-np.log10(eps)))
        warnings.warn(f"{name} returned {dtype} values (about {digits} significant digits): differences of this "
                      f"energy — the mode search's Hessian, check_target, a gradient by differences — carry its "
                      f"rounding (planarflow widens their steps to suit), and the fit sees a noisier U. Compute "
                      f"it in float64 (in JAX: jax.config.update('jax_enable_x64', True) before building the "
                      f"model).", LowPrecisionWarning, stacklevel=4)


def describe(x):
    """A short description of a value for an error message."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    text = repr(x)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(x).__name__} {text}"


def as_array(x, name, ndim=None, shape=None, finite=True, max_abs=MAX_ABS):
    """Return ``x`` as a float64 ndarray or raise a message that names ``name``.

    ``ndim`` is a required number of dimensions (or a tuple of allowed ones); ``shape`` a required
    shape in which ``None`` matches any length; ``finite`` rejects NaN and ±inf, and ``max_abs``
    entries larger than that in size.
    """
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(x)} ({exc})") from None
    if arr.dtype.kind not in "iuf":          # not bool, complex, timedelta64, datetime64, object, text
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(arr)}")
    if ndim is not None:
        allowed = ndim if isinstance(ndim, tuple) else (ndim,)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected a {want}-dimensional array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name}: expected shape {want}, got shape {arr.shape}")
    if arr.size > MAX_ENTRIES:
        raise ValueError(f"{name}: expected at most {MAX_ENTRIES:.0e} numbers, got shape {arr.shape}")
    if arr.dtype.itemsize > 8 and arr.dtype.kind == "f" and arr.size:   # np.longdouble: within float64's range?
        wide = np.abs(arr[np.isfinite(arr)])
        if wide.size and wide.max() > np.finfo(np.float64).max:
            raise ValueError(f"{name}: expected values within float64's range (planarflow computes in float64), "
                             f"got {np.format_float_scientific(wide.max(), precision=4)} in {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float64, copy=False)
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or infinite entries")
    if max_abs is not None and arr.size and np.max(np.abs(arr)) > max_abs:
        raise ValueError(f"{name}: expected entries of size at most {max_abs:g} (larger ones overflow "
                         f"float64 when squared and summed), got {np.max(np.abs(arr)):.3g}")
    return arr


def as_int(x, name, minimum=1, maximum=None):
    """Return ``x`` as a Python int in [minimum, maximum]; floats (even 3.0) and bools are refused,
    as NumPy refuses them for sizes."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {describe(x)}")
    x = operator.index(x)
    if x < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        shown = f"{x}" if x < 10 ** 30 else f"an integer of {len(str(x))} digits"
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {shown}")
    return int(x)


def as_float(x, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``x`` as a finite Python float inside the given interval."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        if isinstance(x, np.ndarray) and x.ndim == 0 and np.issubdtype(x.dtype, np.number) \
                and not np.issubdtype(x.dtype, np.complexfloating) and x.dtype != bool:
            x = x.item()
        else:
            raise TypeError(f"{name}: expected a real number, got {describe(x)}")
    try:
        x = float(x)
    except OverflowError:
        raise ValueError(f"{name}: expected a finite number, got an integer too large for a float") from None
    lo_ok = low is None or (x > low if low_open else x >= low)
    hi_ok = high is None or (x < high if high_open else x <= high)
    if not math.isfinite(x) or not (lo_ok and hi_ok):
        lo = "(-inf" if low is None else ("(" if low_open else "[") + repr(low)
        hi = "inf)" if high is None else repr(high) + (")" if high_open else "]")
        raise ValueError(f"{name}: expected a finite number in {lo}, {hi}, got {x!r}")
    return x


def check_size(name, *factors, limit=MAX_ENTRIES, what="numbers"):
    """Refuse a call whose arrays would hold more than ``limit`` numbers (the product of factors)."""
    total = math.prod(factors)
    if total > limit:
        raise ValueError(f"{name}: this call would need arrays of {total:.3g} {what}, more than the "
                         f"{limit:.0e} allowed; use a smaller {name.replace(' and ', ' or ')}")


def param_keys(params):
    """The keys a flow's parameters have: PARAM_KEYS, and BASE_KEYS after them for a learnable base."""
    return PARAM_KEYS + BASE_KEYS if "mu" in params else PARAM_KEYS


def check_params(params, name="params"):
    """Validate a parameter dict and return ``(params, K, d)`` with float64 arrays.

    Expected exactly the keys ``u`` (K, d), ``w`` (K, d), ``b`` (K,) — or those and the learnable
    base's ``mu`` (d,), ``log_sigma`` (d,), ``lower`` (d, d), zero on and above its diagonal —
    inside the domain described in this module's docstring. The arrays are the caller's own when
    already float64.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name}: expected a dict with keys 'u', 'w', 'b', got {describe(params)}")
    keys = set(params)
    if keys != set(PARAM_KEYS) and keys != set(PARAM_KEYS + BASE_KEYS):
        want = set(PARAM_KEYS + BASE_KEYS) if keys & set(BASE_KEYS) else set(PARAM_KEYS)
        missing = sorted(want - keys, key=str)
        extra = sorted(keys - want, key=str)
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise ValueError(f"{name}: expected exactly the keys 'u', 'w', 'b' (and, for a learnable base, "
                         f"'mu', 'log_sigma', 'lower'); " + ", ".join(parts))
    u = as_array(params["u"], f"{name}['u']", ndim=2)
    K, d = u.shape
    if K < 1 or d < 1:
        raise ValueError(f"{name}['u']: expected shape (K, d) with K >= 1 and d >= 1, got {u.shape}")
    w = as_array(params["w"], f"{name}['w']", ndim=2)
    if w.shape != (K, d):
        raise ValueError(f"{name}['u'], {name}['w']: expected the same shape (K, d) — K layers of d numbers — "
                         f"got {u.shape} for u and {w.shape} for w")
    b = as_array(params["b"], f"{name}['b']", ndim=1)
    if b.shape != (K,):
        raise ValueError(f"{name}['b']: expected shape ({K},), one offset for each of the K = {K} layers of "
                         f"{name}['u'], got {b.shape}")
    norm = np.sqrt(np.einsum("kd,kd->k", w, w))     # entries ≤ MAX_ABS: the squares cannot overflow
    if np.any(norm < MIN_W_NORM):
        k = int(np.argmin(norm))
        raise ValueError(f"{name}['w']: expected every row of norm >= {MIN_W_NORM:g} (û divides by "
                         f"‖w‖²), got ‖w‖ = {norm[k]:.3g} in layer {k}")
    wtu = np.einsum("kd,kd->k", w, u)
    if np.any(wtu < MIN_WTU):
        k = int(np.argmin(wtu))
        raise ValueError(
            f"{name}: expected wᵀu >= {MIN_WTU:g} in every layer (below it the layer is numerically "
            f"singular: softplus(wᵀu) = 1 + wᵀû nears 0), got wᵀu = {wtu[k]:.4g} in layer {k}")
    arrays = {"u": u, "w": w, "b": b}
    if "mu" in keys:
        arrays["mu"] = as_array(params["mu"], f"{name}['mu']", shape=(d,))
        arrays["log_sigma"] = as_array(params["log_sigma"], f"{name}['log_sigma']", shape=(d,), max_abs=MAX_LOG_SIGMA)
        arrays["lower"] = lower = as_array(params["lower"], f"{name}['lower']", shape=(d, d))
        if np.any(np.triu(lower)):
            raise ValueError(f"{name}['lower']: expected zeros on and above the diagonal (L = diag(σ) + "
                             f"lower is lower-triangular), got a non-zero entry there")
    same = all(params[k] is arr for k, arr in arrays.items())
    return (params if same else arrays), K, d


def param_domain_violation(params, full=True):
    """For parameters known to be float64 arrays of the right shapes, with or without a leading
    member axis: a description of the first way they leave the domain, or None. full=False checks
    only ‖w‖ and wᵀu (two reductions: the training loop's check every step — a parameter that is
    not finite makes the next loss or gradient not finite, which the loop catches anyway); the
    full check adds every entry's size (the loop's check at checkpoints and at the end)."""
    for k, v in (params.items() if full else ()):
        big = np.abs(v).max()
        if not big <= (MAX_LOG_SIGMA if k == "log_sigma" else MAX_ABS):      # NaN fails it too
            return (f"params[{k!r}] is not finite" if not np.isfinite(big) else
                    f"params[{k!r}] reached {big:.4g} (the domain ends at "
                    f"{MAX_LOG_SIGMA if k == 'log_sigma' else MAX_ABS:g})")
    w, u = params["w"], params["u"]
    sq = np.einsum("...kd,...kd->...k", w, w).min()
    if not sq >= MIN_W_NORM ** 2:                  # (NaN fails too)
        return (f"‖w‖ fell to {np.sqrt(sq):.3g} (the domain ends at {MIN_W_NORM:g})" if np.isfinite(sq)
                else "params['w'] is not finite")
    wtu = np.einsum("...kd,...kd->...k", w, u).min()
    if not wtu >= MIN_WTU:
        if not np.isfinite(wtu) and not wtu == -np.inf:
            return "params['u'] or params['w'] is not finite"
        return f"wᵀu fell to {wtu:.4g} (the domain ends at {MIN_WTU:g}: a singular layer)"
    return None


def check_points(z, name, d=None, max_abs=MAX_ABS):
    """Validate a batch of points, shape (N, d) with N ≥ 1; returns a float64 array."""
    z = as_array(z, name, ndim=2, max_abs=max_abs)
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (N, d) with N >= 1 and d >= 1, got {z.shape}")
    if d is not None and z.shape[1] != d:
        raise ValueError(f"{name}: expected {d} columns (the flow's dimension), got shape {z.shape}")
    return z


def require_target(target, name="target", dim=None):
    """A target is any object with a callable ``energy``; ``grad`` and ``energy_and_grad``, when
    present, must be callable too. ``dim`` checks the target's own ``dim`` if it has one."""
    if not callable(getattr(target, "energy", None)):
        raise TypeError(f"{name}: expected an object with a method energy(z) -> (N,) (and optionally "
                        f"grad(z) -> (N, d) or energy_and_grad(z)), got {describe(target)} without a "
                        f"callable 'energy'")
    for attr in ("grad", "energy_and_grad"):
        value = getattr(target, attr, None)
        if value is not None and not callable(value):
            raise TypeError(f"{name}.{attr}: expected a callable (or no such attribute), got {describe(value)}")
    tdim = getattr(target, "dim", None)
    if dim is not None and tdim is not None and tdim != dim:
        raise ValueError(f"{name}: expected a target of dimension {dim} (the flow's), got dim = {tdim!r}")
    return target


def target_dim(target, dim=None, name="target"):
    """The dimension of a target: ``dim`` if given, else the target's ``dim`` attribute — never
    assumed. Both given and different: a ValueError."""
    require_target(target, name)
    own = getattr(target, "dim", None)
    if dim is None and own is None:
        raise ValueError(f"{name}: has no 'dim' attribute, so its dimension is unknown; give the target "
                         f"a dim (planarflow.Target(dim, energy) does) or pass dim=")
    if dim is None:
        return as_int(own, f"{name}.dim", maximum=MAX_ENTRIES)
    dim = as_int(dim, "dim", maximum=MAX_ENTRIES)
    if own is not None and own != dim:
        raise ValueError(f"dim: {dim} differs from {name}.dim = {own!r}")
    return dim


def has_gradient(target):
    """Whether a target brings its own gradient (grad or energy_and_grad); planarflow.Target says."""
    own = getattr(target, "has_grad", None)
    if isinstance(own, (bool, np.bool_)):
        return bool(own)
    return callable(getattr(target, "grad", None)) or callable(getattr(target, "energy_and_grad", None))


class CheckedTarget:
    """A user's target as the library evaluates it — the one protocol of both engines.

    Each call gets a copy of the points (the target may keep or modify what it is given) and
    each result is checked — real numbers of the right shape, returned as a fresh float64 array;
    with ``finite=True`` also finite — so that a misbehaving target is named at once instead of
    broadcasting or corrupting a result. The gradient comes from the target's
    ``energy_and_grad`` if it has one, else from its ``grad``, else from finite differences of
    its energy (announced once with a NumericalGradientWarning): central ones
    (differences.central_gradient) until ``training`` is set, forward ones
    (differences.forward_gradient, half the evaluations) from then on.
    When the target has ``energy_and_grad`` — or has no gradient and ``training`` is set —
    ``energy(z)`` computes ∇U too and keeps it for a following ``grad(z)`` at the same points
    (reference.reverse_kl asks for U, then ∇U): one evaluation (or one set of differences)
    a step on either engine. ``typical``: each coordinate's spread, for the differences' steps.
    ``nonfinite`` holds what the last call returned that was not finite.

    The user's functions see few batch shapes, so that a compiled energy (jax.jit, torch.compile)
    compiles once a shape, not once a call: a call of at most ``blocks[0]`` = 2d + 1 points (a
    mode search's single points and its differences) is padded to that many, a larger one is cut
    into calls of ``blocks[1]`` points (fit's batch size while it trains; BLOCK = 512 elsewhere),
    the last padded; padding repeats a real point, and only the real points' values are kept.
    """

    def __init__(self, target, dim, finite=True, name="target", training=False):
        self.target, self.dim, self.finite, self.name = require_target(target, name, dim), dim, finite, name
        self.training = training             # energies are followed by gradients at the same points
        self.typical = None                  # each coordinate's spread, for finite differences
        self._both = getattr(target, "energy_and_grad", None)
        self._grad = getattr(target, "grad", None)
        self.has_grad = has_gradient(target)
        if isinstance(getattr(target, "has_grad", None), (bool, np.bool_)):   # planarflow.Target
            self._both = self._both if self.has_grad else None
            self._grad = self._grad if self.has_grad else None
        self.nonfinite = None
        self._warned = False
        self._pending = None                 # ∇U from the last energy() call, when energy_and_grad gave both
        # planarflow's own targets (api.PaperTarget, api.Gaussian) return fresh float64 arrays of
        # the right shape for any float64 (N, d) points: they are called without copies or checks
        self._own = getattr(target, "_unchecked_energy_and_grad", None)
        self.blocks = (2 * dim + 1, BLOCK)

    def _call(self, fn, z, method, outputs):
        """fn at the points z (N, d), in calls of the fixed ``blocks`` shapes; its values checked —
        real numbers, one per point (``outputs`` "U"), a row per point ("G"), or a pair of them
        ("UG") — and returned for the N points as float64 (a pair for "UG")."""
        N = z.shape[0]
        small, large = self.blocks
        size = small if N <= small else large
        parts = []
        for s in range(0, N, size):
            chunk = z[s:s + size]
            n = chunk.shape[0]
            padded = chunk if n == size else np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
            out = fn(np.array(padded))
            if outputs == "UG" and (not isinstance(out, tuple) or len(out) != 2):
                raise TypeError(f"{self.name}.{method}: expected a pair (U, ∇U), got {describe(out)}")
            parts.append([self._real(v, method, (size,) if kind == "U" else (size, self.dim))[:n]
                          for v, kind in zip(out if outputs == "UG" else (out,), outputs)])
        values = [self._finite(np.concatenate([p[i] for p in parts]), method, z) for i in range(len(outputs))]
        return tuple(values) if outputs == "UG" else values[0]

    def _real(self, value, method, shape):
        """``value`` as a float64 array of ``shape``, or a TypeError/ValueError naming the method."""
        try:
            arr = np.array(value, copy=True)
        except Exception as exc:
            raise TypeError(f"{self.name}.{method}: expected an array of real numbers, got "
                            f"{describe(value)} ({exc})") from None
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{self.name}.{method}: expected real numbers, got {describe(arr)}")
        note_precision(self, arr, f"{self.name}.{method}")
        if arr.shape != shape:
            raise ValueError(f"{self.name}.{method}: expected shape {shape} for points of shape "
                             f"{(shape[0], self.dim)}, got {arr.shape}")
        with np.errstate(over="ignore"):
            return arr.astype(np.float64, copy=False)

    def _check(self, value, method, shape, points):
        return self._finite(self._real(value, method, shape), method, points)

    def _finite(self, arr, method, points):
        """``arr`` as it is, noting (with ``finite``: refusing) values that are not finite."""
        shape = arr.shape
        finite = np.isfinite(arr)
        if not finite.all():
            rows = ~finite.reshape(shape[0], -1).all(axis=1)
            self.nonfinite = (method, int(rows.sum()), shape[0], points[np.argmax(rows)].copy())
            if self.finite:
                raise ValueError(f"{self.name}.{method}: returned NaN or infinite values at {int(rows.sum())} "
                                 f"of {shape[0]} points of the flow, e.g. at "
                                 f"{np.array2string(self.nonfinite[3], precision=4, max_line_width=200)}")
        return arr

    @property
    def eps(self):
        """The relative rounding of the target's values: float64's, or coarser if it returned float32."""
        return max(getattr(self, "_value_eps", EPS), getattr(self.target, "_value_eps", EPS))

    def values(self, z):
        """U at the points z (N, d), checked: the energy alone, never its differences."""
        if self._own is not None:
            return self._own(z)[0]
        return self._call(self.target.energy, z, "energy", "U")

    def energy(self, z):
        if self._own is not None:
            U, g = self._own(z)
            self._pending = (z, g)
            return U
        if self._both is not None or (self.training and not self.has_grad):
            # one call for both (finite differences include U(z) itself); grad at z follows
            U, g = self.energy_and_grad(z)
            self._pending = (z.copy(), g)
            return U
        return self._call(self.target.energy, z, "energy", "U")

    def grad(self, z, typical=None):
        pending, self._pending = self._pending, None
        if pending is not None and (pending[0] is z or (pending[0].shape == z.shape and np.array_equal(pending[0], z))):
            return pending[1]
        if self._both is not None:
            return self.energy_and_grad(z)[1]
        if self._grad is not None:
            return self._call(self._grad, z, "grad", "G")
        return self.energy_and_grad(z, typical)[1]

    def energy_and_grad(self, z, typical=None):
        """(U (N,), ∇U (N, d)); ``typical`` (d,): each coordinate's spread, for finite differences."""
        if self._own is not None:
            return self._own(z)
        if self._both is not None:
            return self._call(self._both, z, "energy_and_grad", "UG")
        if self._grad is not None:
            return self.energy(z), self.grad(z)
        warn_numerical(self)

        def energy(x):
            return self._call(self.target.energy, x, "energy", "U")

        with np.errstate(all="ignore"):
            U, g = (forward_gradient if self.training else central_gradient)(
                energy, np.asarray(z, dtype=np.float64), self.typical if typical is None else typical, self.eps)
        return U, self._check(g, "energy (its finite differences)", z.shape, z)


def make_rng(rng, name="rng"):
    """``np.random.default_rng(rng)`` with an error message that names the argument."""
    if isinstance(rng, (bool, np.bool_, float, complex, str, bytes)):
        raise TypeError(f"{name}: expected None, an int seed, a SeedSequence or a Generator, got {describe(rng)}")
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"{name}: expected None, a non-negative int seed, a SeedSequence or a Generator, got {describe(rng)}"
        ) from exc
