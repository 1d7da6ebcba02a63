"""Checks at the public boundary: every error names the argument, what was expected and what came.

Each public function (tools/api.py) validates its inputs here, once, before any work or
allocation, and then calls the plain lesson code, which trusts them.

The domain of the parameters is where float64 computes a planar flow and its gradients: finite
entries of at most MAX_ABS in size, ‖w‖ ≥ 1e-50 (û grows like 1/‖w‖: at ‖w‖ = 1e-160, ‖w‖²
underflows and û is NaN), and wᵀu ≥ MIN_WTU = −700. Below that, 1 + wᵀû = softplus(wᵀu) ≈
e^{wᵀu} nears the smallest float64, and a sample on the layer's hyperplane wᵀz + b = 0 — where
D = 1 + h'·wᵀû equals softplus(wᵀu) — gets ∂L/∂softplus(wᵀu) ≈ 1/softplus(wᵀu) = ∞. At −700,
1/softplus is about 1e304, which leaves room for a batch's sum (tests/test_edges.py checks
reverse_kl's gradient exactly there).
"""

import math
import numbers
import operator

import numpy as np

PARAM_KEYS = ("u", "w", "b")
MIN_WTU = -700.0          # wᵀu below this: numerically singular (see above)
MIN_W_NORM = 1e-50        # ‖w‖ below this: û = u + c·w with c ~ 1/‖w‖² overflows
MAX_ABS = 1e100           # parameters and points: larger entries overflow when squared and summed
MAX_ENTRIES = 10 ** 8     # the largest array (in numbers) a call may be asked to allocate


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
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(arr)}")
    if ndim is not None:
        allowed = ndim if isinstance(ndim, tuple) else (ndim,)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected a {want}-dimensional array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got shape {arr.shape}")
    if arr.size > MAX_ENTRIES:
        raise ValueError(f"{name}: expected at most {MAX_ENTRIES:.0e} numbers, got shape {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):     # np.longdouble beyond float64's range
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
                         f"{limit:.0e} allowed; use a smaller {name}")


def check_params(params, name="params"):
    """Validate a parameter dict and return ``(params, K, d)`` with float64 arrays.

    Expected exactly the keys ``u`` (K, d), ``w`` (K, d), ``b`` (K,) inside the domain described
    in this module's docstring. The arrays are the caller's own when already float64.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name}: expected a dict with keys 'u', 'w', 'b', got {describe(params)}")
    keys = set(params)
    if keys != set(PARAM_KEYS):
        missing = sorted(set(PARAM_KEYS) - keys, key=str)
        extra = sorted(keys - set(PARAM_KEYS), key=str)
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise ValueError(f"{name}: expected exactly the keys 'u', 'w', 'b'; " + ", ".join(parts))
    u = as_array(params["u"], f"{name}['u']", ndim=2)
    K, d = u.shape
    if K < 1 or d < 1:
        raise ValueError(f"{name}['u']: expected shape (K, d) with K >= 1 and d >= 1, got {u.shape}")
    w = as_array(params["w"], f"{name}['w']", shape=(K, d))
    b = as_array(params["b"], f"{name}['b']", shape=(K,))
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
    same = all(params[k] is arr for k, arr in zip(PARAM_KEYS, (u, w, b)))
    return (params if same else {"u": u, "w": w, "b": b}), K, d


def param_domain_violation(u, w, b):
    """For parameters known to be float64 arrays of shapes (…, K, d), (…, K, d), (…, K): a
    description of the first way they leave the domain, or None (the training loop's check)."""
    if not (np.isfinite(u).all() and np.isfinite(w).all() and np.isfinite(b).all()):
        return "a parameter is not finite"
    big = max(np.abs(u).max(), np.abs(w).max(), np.abs(b).max())
    if big > MAX_ABS:
        return f"a parameter reached {big:.3g} (the domain ends at {MAX_ABS:g})"
    sq = (w * w).sum(axis=-1)
    if sq.min() < MIN_W_NORM ** 2:
        return f"‖w‖ fell to {np.sqrt(sq.min()):.3g} (the domain ends at {MIN_W_NORM:g})"
    wtu = (w * u).sum(axis=-1)
    if wtu.min() < MIN_WTU:
        return f"wᵀu fell to {wtu.min():.4g} (the domain ends at {MIN_WTU:g}: a singular layer)"
    return None


def check_points(z, name, d=None):
    """Validate a batch of points, shape (N, d) with N ≥ 1; returns a float64 array."""
    z = as_array(z, name, ndim=2)
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (N, d) with N >= 1 and d >= 1, got {z.shape}")
    if d is not None and z.shape[1] != d:
        raise ValueError(f"{name}: expected {d} columns (the flow's dimension), got shape {z.shape}")
    return z


def check_target(target, name="target", dim=None):
    """A target is any object with callable ``energy`` and ``grad``; ``dim`` checks its ``dim``."""
    for attr in ("energy", "grad"):
        if not callable(getattr(target, attr, None)):
            raise TypeError(
                f"{name}: expected an object with methods energy(z) -> (N,) and grad(z) -> (N, d), "
                f"got {describe(target)} without a callable '{attr}'")
    tdim = getattr(target, "dim", None)
    if dim is not None and tdim is not None and tdim != dim:
        raise ValueError(f"{name}: expected a target of dimension {dim} (the flow's), got dim = {tdim!r}")
    return target


class CheckedTarget:
    """A user's target as the library evaluates it: each call gets a copy of the points (the
    target may keep or modify what it is given) and each result is checked — real numbers of the
    right shape, returned as a fresh float64 array; with ``finite=True`` also finite — so that a
    misbehaving target is named at once instead of broadcasting or corrupting a result."""

    def __init__(self, target, dim, finite=True, name="target"):
        self.target, self.dim, self.finite, self.name = check_target(target, name, dim), dim, finite, name
        self._both = getattr(target, "energy_and_grad", None)

    def _check(self, value, method, shape):
        try:
            arr = np.array(value, copy=True)
        except Exception as exc:
            raise TypeError(f"{self.name}.{method}: expected an array of real numbers, got "
                            f"{describe(value)} ({exc})") from None
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(f"{self.name}.{method}: expected real numbers, got {describe(arr)}")
        if arr.shape != shape:
            raise ValueError(f"{self.name}.{method}: expected shape {shape} for points of shape "
                             f"{(shape[0], self.dim)}, got {arr.shape}")
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float64, copy=False)
        if self.finite and not np.all(np.isfinite(arr)):
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{self.name}.{method}: returned {bad} NaN or infinite values at "
                             f"{shape[0]} points of the flow")
        return arr

    def energy(self, z):
        return self._check(self.target.energy(np.array(z)), "energy", z.shape[:1])

    def grad(self, z):
        return self._check(self.target.grad(np.array(z)), "grad", z.shape)

    def energy_and_grad(self, z):
        if self._both is None:
            return self.energy(z), self.grad(z)
        out = self._both(np.array(z))
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"{self.name}.energy_and_grad: expected a pair (U, ∇U), got {describe(out)}")
        return self._check(out[0], "energy_and_grad", z.shape[:1]), self._check(out[1], "energy_and_grad", z.shape)


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
