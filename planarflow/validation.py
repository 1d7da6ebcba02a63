"""Checks at the public boundary: every error names the argument, what was expected and what came.

Each public function validates its inputs once, here, and then calls plain code that trusts
them; the training loop validates before its first step and never inside it.
"""

import numbers
import operator

import numpy as np

PARAM_KEYS = ("u", "w", "b")
MIN_WTU = -730.0       # below this softplus(wᵀu) = 1 + wᵀû nears the float64 minimum: singular


def _describe(x):
    """A short description of a value for an error message."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    text = repr(x)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(x).__name__} {text}"


def as_array(x, name, ndim=None, shape=None, finite=True):
    """Return ``x`` as a float64 ndarray or raise a message that names ``name``.

    ``ndim`` is a required number of dimensions (or a tuple of allowed ones); ``shape`` a required
    shape in which ``None`` matches any length; ``finite`` rejects NaN and ±inf.
    """
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(f"{name}: expected an array of real numbers, got {_describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected an array of real numbers, got {_describe(x)} ({exc})")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: expected an array of real numbers, got {_describe(arr)}")
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None:
        allowed = ndim if isinstance(ndim, tuple) else (ndim,)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected a {want}-dimensional array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or infinite entries")
    return arr


def as_int(x, name, minimum=1):
    """Return ``x`` as a Python int ≥ ``minimum``; floats (even 3.0) and bools are refused, as
    NumPy refuses them for sizes."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {_describe(x)}")
    x = operator.index(x)
    if x < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {x}")
    return int(x)


def as_float(x, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``x`` as a finite Python float inside the given interval."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        if isinstance(x, np.ndarray) and x.ndim == 0 and np.issubdtype(x.dtype, np.number):
            x = x.item()
        else:
            raise TypeError(f"{name}: expected a real number, got {_describe(x)}")
    x = float(x)
    lo_ok = low is None or (x > low if low_open else x >= low)
    hi_ok = high is None or (x < high if high_open else x <= high)
    if not np.isfinite(x) or not (lo_ok and hi_ok):
        lo = "(-inf" if low is None else ("(" if low_open else "[") + repr(low)
        hi = "inf)" if high is None else repr(high) + (")" if high_open else "]")
        raise ValueError(f"{name}: expected a finite number in {lo}, {hi}, got {x!r}")
    return x


def check_params(params, name="params"):
    """Validate a parameter dict and return it as float64 arrays with (K, d) read off it.

    Expected exactly the keys ``u`` (K, d), ``w`` (K, d), ``b`` (K,), all finite, every row of
    ``w`` non-zero (û divides by ‖w‖², so w = 0 is a layer with no defined û), and every
    wᵀu ≥ −730: below that softplus(wᵀu) = 1 + wᵀû underflows towards 0 and the layer is
    numerically singular (its log-det −∞ where tanh(a) = 0).
    Returns ``(params, K, d)``; the arrays are the caller's own when already float64.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name}: expected a dict with keys 'u', 'w', 'b', got {_describe(params)}")
    keys = set(params)
    if keys != set(PARAM_KEYS):
        missing = sorted(set(PARAM_KEYS) - keys, key=str)
        extra = sorted(keys - set(PARAM_KEYS), key=str)
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ValueError(f"{name}: expected exactly the keys 'u', 'w', 'b'; " + ", ".join(parts))
    u = as_array(params["u"], f"{name}['u']", ndim=2)
    K, d = u.shape
    if K < 1 or d < 1:
        raise ValueError(f"{name}['u']: expected shape (K, d) with K >= 1 and d >= 1, got {u.shape}")
    w = as_array(params["w"], f"{name}['w']", shape=(K, d))
    b = as_array(params["b"], f"{name}['b']", shape=(K,))
    sq = np.einsum("kd,kd->k", w, w)
    if np.any(sq == 0.0):
        k = int(np.flatnonzero(sq == 0.0)[0])
        raise ValueError(
            f"{name}['w']: expected every row non-zero (û divides by ‖w‖²), "
            f"got ‖w‖² = 0 in layer {k}"
        )
    wtu = np.einsum("kd,kd->k", w, u)
    if np.any(wtu < MIN_WTU):
        k = int(np.argmin(wtu))
        raise ValueError(
            f"{name}: expected wᵀu >= {MIN_WTU:g} in every layer (below it the layer is numerically "
            f"singular: softplus(wᵀu) = 1 + wᵀû underflows), got wᵀu = {wtu[k]:.4g} in layer {k}"
        )
    out = params if all(params[k] is arr for k, arr in zip(PARAM_KEYS, (u, w, b))) else {"u": u, "w": w, "b": b}
    return out, K, d


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
                f"got {_describe(target)} without a callable '{attr}'"
            )
    tdim = getattr(target, "dim", None)
    if dim is not None and tdim is not None and tdim != dim:
        raise ValueError(f"{name}: expected a target of dimension {dim} (the flow's), got dim = {tdim}")
    return target


def make_rng(rng, name="rng"):
    """``np.random.default_rng(rng)`` with an error message that names the argument."""
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: expected None, an int seed, a SeedSequence or a Generator, got {_describe(rng)}"
        ) from exc
