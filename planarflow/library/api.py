"""What ``import planarflow`` gives: the lesson's functions with their arguments checked.

Each function here checks its arguments (library/validation.py) before any work or allocation —
a wrong shape, NaN/inf, a size, a target that is not one: a ValueError or TypeError naming the
argument — and then calls the plain function of the same name in reference.py, inverse.py,
diagnostics.py, targets.py or gradcheck.py, looked up at call time: an edit (or a monkeypatch)
of those files changes what these return. Targets given by a user are evaluated through
validation.CheckedTarget, which hands them copies of the points and checks what comes back.
Arrays too large to hold at once are processed in chunks, so memory stays bounded.
"""

import functools
import warnings

import numpy as np

from .. import base as base_lesson, diagnostics, gradcheck, inverse as inverse_module, path_gradient, reference, targets
from .validation import (MAX_ENTRIES, MAX_POINT, CheckedTarget, as_array, as_float, as_int, check_params,
                         check_points, check_size, describe, make_rng, require_target, target_dim)

CHUNK = 8192                    # points per call of the plain functions that keep caches
MAX_SAMPLES = 10 ** 9           # kl_divergence, importance_log_z: n (memory stays bounded)
TARGET_NAMES = tuple(targets.ENERGIES)


# --- the method (reference.py; base.py for a flow with a learnable base; path_gradient.py) ---------

def lesson(params):
    """The lesson file whose functions compute this flow: base.py's for a flow with a learnable
    base (it has ``mu``), else reference.py's."""
    return base_lesson if "mu" in params else reference


def u_hat(u, w):
    """û(u, w) = u + (m(wᵀu) − wᵀu)·w/‖w‖², m(x) = −1 + softplus(x) (appendix A.1), so that
    wᵀû = m(wᵀu) > −1. u, w: (d,) for one layer or (K, d); returns an array shaped like u."""
    u, w = _u_w(u, w)
    return reference.u_hat_forward(u, w)[0]


def u_hat_forward(u, w):
    """Checked reference.u_hat_forward: (û, sp = softplus(wᵀu) = 1 + wᵀû, cache)."""
    return reference.u_hat_forward(*_u_w(u, w))


def u_hat_backward(du_hat, dsp, cache):
    """reference.u_hat_backward: (∂L/∂u, ∂L/∂w) from ∂L/∂û (shaped like u), ∂L/∂sp (u's shape
    without its last axis) and the cache u_hat_forward returned."""
    u = _cache(cache, "u_hat_forward", 6)[0]
    du_hat = as_array(du_hat, "du_hat", shape=u.shape)
    dsp = as_array(dsp, "dsp", shape=u.shape[:-1])
    return reference.u_hat_backward(du_hat, dsp, cache)


def _cache(cache, forward, length):
    """A cache as ``forward`` returns it (a tuple of ``length`` items led by an array), or a TypeError."""
    if not (isinstance(cache, tuple) and len(cache) == length and isinstance(cache[0], np.ndarray)):
        raise TypeError(f"cache: expected the cache that {forward} returned, got {describe(cache)}")
    return cache


def _u_w(u, w):
    u = as_array(u, "u", ndim=(1, 2))
    if u.size == 0:
        raise ValueError(f"u: expected K rows of d numbers (or one row), got an empty array of shape {u.shape}")
    w = as_array(w, "w", shape=u.shape)
    check_params({"u": np.atleast_2d(u), "w": np.atleast_2d(w), "b": np.zeros(np.atleast_2d(u).shape[0])})
    return u, w


def planar_forward(z, u, w, b):
    """One planar layer y = z + û·tanh(wᵀz + b) and its log-det log(1 + h'(a)·wᵀû), checked.

    z (N, d); u, w (d,); b a number. Returns y (N, d), logdet (N,), cache (reference.planar_forward).
    """
    z = check_points(z, "z")
    d = z.shape[1]
    u = as_array(u, "u", shape=(d,))
    w = as_array(w, "w", shape=(d,))
    b = as_float(b, "b")
    check_params({"u": u[None], "w": w[None], "b": np.array([b])})
    return reference.planar_forward(z, u, w, b)


def planar_backward(dy, dlogdet, cache):
    """reference.planar_backward: dz, du, dw, db from dy (N, d), dlogdet (N,) and the cache."""
    z = _cache(cache, "planar_forward", 8)[0]
    dy = as_array(dy, "dy", shape=z.shape)
    dlogdet = as_array(dlogdet, "dlogdet", shape=z.shape[:1])
    return reference.planar_backward(dy, dlogdet, cache)


def flow_forward(params, z0):
    """Push z0 (N, d) through the K layers (and the base, if the flow has one), checked:
    (z_K or x (N, d), the summed log-dets (N,), caches) — reference.flow_forward or base.flow_forward."""
    params, K, d = check_params(params)
    z0 = check_points(z0, "z0", d)
    check_size("z0", z0.shape[0], K, d + 6)                        # the caches
    return lesson(params).flow_forward(params, z0)


def flow_backward(dzK, dsum_logdet, caches):
    """reference.flow_backward (base.flow_backward for a flow with a base): (∂L/∂z₀, gradients
    shaped like params) from dzK (N, d), dsum_logdet (N,) and the caches flow_forward returned."""
    with_base = isinstance(caches, tuple) and len(caches) == 2
    layers = caches[0] if with_base else caches
    if not (isinstance(layers, list) and layers and all(isinstance(c, tuple) for c in layers)) or (
            with_base and not isinstance(caches[1], tuple)):
        raise TypeError(f"caches: expected the caches that flow_forward returned, got {describe(caches)}")
    z = _cache(layers[0], "flow_forward", 8)[0]
    dzK = as_array(dzK, "dzK", shape=z.shape)
    dsum_logdet = as_array(dsum_logdet, "dsum_logdet", shape=z.shape[:1])
    return (base_lesson if with_base else reference).flow_backward(dzK, dsum_logdet, caches)


def init_params(K, dim=2, rng=None, u_scale=0.1, b_scale=1.0, base=False):
    """Raw parameters u, w (K, dim), b (K,) for K layers near the identity (reference.init_params);
    with base=True also a learnable base at N(0, I): mu (dim,), log_sigma (dim,), lower (dim, dim)
    (base.init_params)."""
    K = as_int(K, "K", maximum=MAX_ENTRIES)
    dim = as_int(dim, "dim", maximum=MAX_ENTRIES)
    check_size("K" if K > dim else "dim" if dim > K else "K and dim", K + dim, dim, 2)   # the larger one
    u_scale = as_float(u_scale, "u_scale", low=0.0, high=1e6)
    b_scale = as_float(b_scale, "b_scale", low=0.0, high=1e6)
    if not isinstance(base, (bool, np.bool_)):
        raise TypeError(f"base: expected True or False, got {base!r}")
    return (base_lesson if base else reference).init_params(K, dim, make_rng(rng), u_scale, b_scale)


def sample(params, n, rng=None):
    """n samples of q_K and their exact log-density: (z (n, d), log_q (n,)).

    reference.sample (base.sample with a learnable base), CHUNK samples at a time from the same
    generator (the same numbers as one call: a Generator's draws do not depend on how they are split).
    """
    params, K, d = check_params(params)
    n = as_int(n, "n", maximum=MAX_ENTRIES)
    check_size("n", n, d + 1)
    rng = make_rng(rng)
    z, log_q = np.empty((n, d)), np.empty(n)
    for i in range(0, n, CHUNK):
        z[i:i + CHUNK], log_q[i:i + CHUNK] = lesson(params).sample(params, min(CHUNK, n - i), rng)
    big = np.max(np.abs(z))
    if not big <= MAX_POINT:                  # only at the domain's far edges: a huge û and a huge σ
        raise ValueError(f"params: this flow draws points of size {big:.3g}, beyond the {MAX_POINT:g} that "
                         f"planarflow can take back through log_prob and inverse; its scale is too large to use")
    return z, log_q


def reverse_kl(params, z0, target, beta=1.0, gradient="full"):
    """The reverse-KL loss on the batch z0 (N, d) and its gradient: reference.reverse_kl,
    base.reverse_kl for a flow with a learnable base, path_gradient.reverse_kl for gradient="path".

    loss = (1/N) Σₙ [log q₀(z₀⁽ⁿ⁾) − Σ_k log D_k⁽ⁿ⁾ − Σᵢ log σᵢ + β·U(x⁽ⁿ⁾)],  ≥ −log Z in expectation
    at β = 1 (the Σᵢ log σᵢ term and x = μ + A·z_K only with a base; otherwise x = z_K).

    Parameters
    ----------
    params : dict u (K, d), w (K, d), b (K,) — and mu, log_sigma (d,), lower (d, d) with a base
    z0 : ndarray, shape (N, d)   samples of q₀ = N(0, I)
    target : a target (see planarflow.fit); its values must be finite
    beta : float in (0, 1]
    gradient : "full" (default): the exact gradient of this loss; "path": the path-derivative
        estimator (path_gradient.py) — the score term ∂log q_θ(z)/∂θ at fixed z dropped, which
        has expectation 0, so that both estimate the same ∇F but "path" with less noise near q = p

    Returns
    -------
    loss : float, grads : dict shaped like params
    """
    params, K, d = check_params(params)
    z0 = check_points(z0, "z0", d)
    check_size("z0", z0.shape[0], K, d + 6)
    checked = CheckedTarget(target, d)
    beta = as_float(beta, "beta", low=0.0, high=1.0, low_open=True)
    if not isinstance(gradient, str) or gradient not in ("full", "path"):
        raise ValueError(f"gradient: expected 'full' or 'path', got {gradient!r}")
    objective = path_gradient if gradient == "path" else lesson(params)
    return objective.reverse_kl(params, z0, checked, beta)


class Adam(reference.Adam):
    """reference.Adam with its settings and every step's arrays checked.

    ``step(params, grads)`` updates the float64 arrays of ``params`` in place; ``grads`` must have
    the same keys and shapes, finite, and the shapes may not change between steps.
    """

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(as_float(lr, "lr", low=0.0, low_open=True),
                         as_float(beta1, "beta1", low=0.0, high=1.0, high_open=True),
                         as_float(beta2, "beta2", low=0.0, high=1.0, high_open=True),
                         as_float(eps, "eps", low=0.0, low_open=True))

    def step(self, params, grads):
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError("params, grads: expected dicts of arrays")
        if set(grads) != set(params):
            raise ValueError(f"grads: expected the keys of params {sorted(map(str, params))}, "
                             f"got {sorted(map(str, grads))}")
        self.lr = as_float(self.lr, "lr", low=0.0, low_open=True)
        checked = {}
        for key, theta in params.items():
            if not isinstance(theta, np.ndarray) or theta.dtype != np.float64:
                raise TypeError(f"params[{key!r}]: expected a float64 ndarray (updated in place), "
                                f"got {type(theta).__name__}")
            if not theta.flags.writeable:
                raise ValueError(f"params[{key!r}]: expected a writeable array (updated in place)")
            if key in self.m and self.m[key].shape != theta.shape:
                raise ValueError(f"params[{key!r}]: its shape changed from {self.m[key].shape} to "
                                 f"{theta.shape} since the last step; use a new Adam")
            checked[key] = as_array(grads[key], f"grads[{key!r}]", shape=theta.shape)
        super().step(params, checked)


# --- targets (targets.py) ---------------------------------------------------------------------

class PaperTarget:
    """One of the paper's energies U1–U4 (targets.py) in 2-D, inside the box wall unless box=None.

    Attributes: ``name``, ``dim`` (= 2), ``box`` (half-width, or None), ``wall`` (width).
    Methods: ``energy(z)`` (N,), ``grad(z)`` (N, 2), ``energy_and_grad(z)``; z has shape (N, 2).
    """

    dim = 2
    paper_figure = True          # fit's start="auto" starts it at N(0, I), as the paper does

    def __init__(self, name, box=4.0, wall=0.2):
        if not isinstance(name, str) or name not in TARGET_NAMES:
            raise ValueError(f"name: expected one of {list(TARGET_NAMES)}, got {name!r}")
        self.name = name
        self.box = None if box is None else as_float(box, "box", low=0.0, low_open=True, high=1e6)
        self.wall = as_float(wall, "wall", low=1e-6, high=1e6)
        self.identity = repr(self)

    def __repr__(self):
        return f"get_target({self.name!r}, box={self.box!r}, wall={self.wall!r})"

    def energy_and_grad(self, z):
        """U(z) of shape (N,) and ∇U(z) of shape (N, 2) for z of shape (N, 2)."""
        return self._unchecked_energy_and_grad(check_points(z, "z", 2))

    def _unchecked_energy_and_grad(self, z):
        """For planarflow's own loops (validation.CheckedTarget), whose points are already float64
        arrays of the right shape: the energy without checking them again."""
        return targets.paper_energy(self.name, z, self.box, self.wall)

    def energy(self, z):
        """U(z), shape (N,), for z of shape (N, 2)."""
        return self.energy_and_grad(z)[0]

    def grad(self, z):
        """∇U(z), shape (N, 2), for z of shape (N, 2)."""
        return self.energy_and_grad(z)[1]


def get_target(name, box=4.0, wall=0.2):
    """The paper's energy ``name`` ∈ {"U1", "U2", "U3", "U4"}, inside a box wall by default.

    Parameters
    ----------
    name : str
    box : float > 0 or None
        Half-width of the box (−box, box)² outside which the wall rises. ``None`` gives the
        paper's energies exactly — but then exp(−U) of U2, U3 and U4 does not decay along z₁,
        their Z is infinite, and reverse-KL training has no minimum: the loss can fall for ever
        while the flow stretches along z₁. Use box=None for U2–U4 only to see that happen.
    wall : float > 0
        Width of the wall: outside the box U rises by ½(excess/wall)² per coordinate.

    Returns
    -------
    PaperTarget with ``energy``, ``grad``, ``energy_and_grad``, ``name`` and ``dim`` = 2.
    """
    return PaperTarget(name, box=box, wall=wall)


class Gaussian:
    """A diagonal Gaussian target U(z) = ½ Σᵢ ((zᵢ − μᵢ)/σᵢ)² in any dimension (targets.gaussian).

    Its normaliser is known in closed form, log Z = Σᵢ log σᵢ + (d/2)·log 2π (``log_z``): the
    target on which an exact fit (KL = 0, loss = −log Z) can be checked.
    """

    def __init__(self, mean, std):
        self.mean = as_array(mean, "mean", ndim=1, max_abs=1e100)
        if self.mean.size < 1:
            raise ValueError("mean: expected at least one coordinate, got an empty array")
        self.std = as_array(std, "std", shape=self.mean.shape)
        if np.any(self.std < 1e-100):
            raise ValueError(f"std: expected entries of at least 1e-100, got {self.std}")
        check_size("mean", self.mean.size)
        self.dim = self.mean.size
        self.name = f"Gaussian{self.dim}d"
        self.log_z = float(np.sum(np.log(self.std)) + 0.5 * self.dim * np.log(2 * np.pi))
        self.identity = f"Gaussian(mean={self.mean.tolist()}, std={self.std.tolist()})"

    def __repr__(self):
        return self.identity

    def energy_and_grad(self, z):
        return self._unchecked_energy_and_grad(check_points(z, "z", self.dim))

    def _unchecked_energy_and_grad(self, z):
        return targets.gaussian(z, self.mean, self.std)

    def energy(self, z):
        return self.energy_and_grad(z)[0]

    def grad(self, z):
        return self.energy_and_grad(z)[1]


# --- the exact density anywhere (inverse.py) -------------------------------------------------

def inverse(params, y):
    """Undo the flow: the z₀ (N, d) with flow_forward(params, z₀) = y for every row of y (N, d)."""
    params, K, d = check_params(params)
    y = check_points(y, "y", d, max_abs=MAX_POINT)
    with np.errstate(over="ignore"):          # a point far beyond the flow's scale: z₀ is ±inf there
        return inverse_module.inverse(params, y)


def log_prob(params, y):
    """Exact log-density log q_K(y) (N,) of the flow at any points y (N, d) (inverse.log_prob)."""
    params, K, d = check_params(params)
    y = check_points(y, "y", d, max_abs=MAX_POINT)
    with np.errstate(over="ignore"):          # a density below float64's smallest: log q = −inf
        return np.concatenate([inverse_module.log_prob(params, y[i:i + CHUNK]) for i in range(0, y.shape[0], CHUNK)])


# --- quality numbers (diagnostics.py) ---------------------------------------------------------

def log_partition(target, limit=None, spacing=0.02):
    """log Z = log ∫ exp(−U(z)) dz of a 2-D target by quadrature on [−limit, limit]²
    (diagnostics.log_partition). By default limit is box + 15·wall for a boxed target (the wall
    has risen by ½·15² = 112 nats there) and 8 otherwise. Raises ValueError for a target that is
    not 2-D, a grid too coarse for the density, or a density that has not vanished at its edge —
    each message says what to pass instead."""
    require_target(target)
    dim = getattr(target, "dim", None)
    if dim != 2:
        raise ValueError(f"target: log_partition integrates on a 2-D grid; this target's dimension "
                         f"is {dim!r} (a target without a dim attribute is not assumed to be 2-D): "
                         f"pass log_z to kl_divergence instead, or use importance_log_z")
    spacing = as_float(spacing, "spacing", low=1e-4, high=1.0)
    box = getattr(target, "box", None) if isinstance(target, PaperTarget) else None
    if limit is None:
        limit = box + 15.0 * target.wall if box is not None else 8.0
    limit = as_float(limit, "limit", low=0.0, low_open=True, high=1e4)
    if (2 * int(np.ceil(limit / spacing)) + 1) ** 2 > MAX_ENTRIES:
        raise ValueError(f"spacing: {spacing} on [−{limit}, {limit}]² needs more than {MAX_ENTRIES:.0e} "
                         f"points; use a larger spacing or a smaller limit")
    if isinstance(target, PaperTarget):
        return _paper_log_partition(target.name, target.box, target.wall, limit, spacing)
    return diagnostics.log_partition(CheckedTarget(target, 2), limit, spacing)


@functools.lru_cache(maxsize=64)
def _paper_log_partition(name, box, wall, limit, spacing):
    return diagnostics.log_partition(PaperTarget(name, box, wall), limit, spacing)


def _log_z(target, log_z, d):
    """log Z: the argument, else the target's ``log_z`` attribute, else quadrature (2-D only)."""
    if isinstance(log_z, str):
        raise ValueError(f"log_z: expected a number, None or 'importance', got {log_z!r}")
    if log_z is not None:
        return as_float(log_z, "log_z")
    if getattr(target, "log_z", None) is not None:
        return as_float(target.log_z, "target.log_z")
    if d != 2:
        raise ValueError(f"log_z: the flow is {d}-dimensional and log Z can only be computed by "
                         f"quadrature in 2-D; pass log_z (or give the target a log_z attribute)")
    return log_partition(target)


def kl_divergence(params, target, n, rng=None, log_z=None):
    """KL(q_K ‖ p) in nats from n fresh samples, with its Monte-Carlo standard error.

    KL = E_q[log q_K(z) + U(z)] + log Z; log Z is ``log_z`` if given, else the target's own
    ``log_z`` attribute if it has one, else ``log_partition(target)`` (2-D flows only).
    ``log_z="importance"`` estimates it by importance sampling with the flow (n more draws) and
    warns that the result is an estimate: log Ẑ is biased low (Jensen: E[log Ẑ] ≤ log Z), so
    the KL is too, by as much as q misses of p, and its stderr leaves out log Ẑ's own error.
    Memory does not grow with n (diagnostics.kl_divergence keeps running sums).

    Returns
    -------
    (kl, stderr) : floats; stderr = std(log q + U)/√n.
    """
    params, K, d = check_params(params)
    checked = CheckedTarget(target, d)
    n = as_int(n, "n", minimum=2, maximum=MAX_SAMPLES)
    rng = make_rng(rng)
    if isinstance(log_z, str) and log_z == "importance":
        lz, ess = diagnostics.importance_log_z(params, checked, n, rng)
        warnings.warn(f"kl_divergence: log Z estimated by importance sampling ({lz:.4f}, ESS/n {ess:.3f}); "
                      f"the KL is then an estimate biased low, and its stderr leaves out log Ẑ's error",
                      EstimatedLogZWarning, stacklevel=2)
    else:
        lz = _log_z(target, log_z, d)
    return diagnostics.kl_divergence(params, checked, n, rng, lz)


class EstimatedLogZWarning(UserWarning):
    """A KL computed with an estimated log Z (kl_divergence(..., log_z="importance"))."""


def importance_log_z(params, target, n, rng=None, return_k_hat=False):
    """Importance-sampling estimate of log Z with q_K as the proposal, and ESS/n of its weights.

    log Ẑ = logsumexp(−U(zᵢ) − log q_K(zᵢ)) − log n,   ESS = (Σwᵢ)²/Σwᵢ² (computed in logs), in
    any dimension and in memory that does not grow with n. Returns (log_z, ess_fraction); with
    return_k_hat=True (n ≥ 21), (log_z, ess_fraction, k_hat), k_hat the PSIS Pareto shape of the
    weights (see ``psis``): below 0.7 the estimate and the ESS can be trusted, above they cannot.
    """
    params, K, d = check_params(params)
    checked = CheckedTarget(target, d)
    if not isinstance(return_k_hat, (bool, np.bool_)):
        raise TypeError(f"return_k_hat: expected True or False, got {return_k_hat!r}")
    n = as_int(n, "n", minimum=21 if return_k_hat else 1, maximum=MAX_SAMPLES)
    return diagnostics.importance_log_z(params, checked, n, make_rng(rng), bool(return_k_hat))


def psis(log_weights):
    """Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry, JMLR 2024).

    Parameters
    ----------
    log_weights : array_like, shape (S,), finite, S ≥ 21   log importance ratios log p(zᵢ) − log q(zᵢ)
        (up to a constant)

    Returns
    -------
    smoothed_log_weights : ndarray, shape (S,)   normalised: logsumexp = 0
    k_hat : float   the generalized Pareto shape fitted to the largest weights. k̂ < 0.7: the
        importance-sampling estimates are reliable; above, they are not (and neither is an ESS
        computed from the weights). −inf when the largest weights are all equal.
    """
    lw = as_array(log_weights, "log_weights", ndim=1, max_abs=1e300)
    if lw.size < 21:
        raise ValueError(f"log_weights: expected at least 21 values (the tail fit needs 5), got {lw.size}")
    return diagnostics.psis(lw)


# --- central differences (gradcheck.py) ---------------------------------------------------------

def numerical_gradient(f, x, h=1e-5):
    """Central-difference gradient of a scalar function f at the array x (gradcheck.numerical_gradient).

    x (float64 or np.longdouble ndarray) is perturbed one entry at a time, in place, and restored;
    h > 0 is the step. Returns an array shaped like x."""
    if not callable(f):
        raise TypeError(f"f: expected a callable returning a number, got {type(f).__name__}")
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float64, np.longdouble):
        raise TypeError("x: expected a float64 or longdouble ndarray (it is perturbed in place)")
    if not x.flags.writeable:
        raise ValueError("x: expected a writeable array (it is perturbed in place)")
    check_size("x", x.size)
    if x.size == 0:
        raise ValueError("x: expected at least one entry, got an empty array")
    h = as_float(h, "h", low=0.0, low_open=True, high=1e100)
    if not np.all(np.isfinite(x)):
        raise ValueError("x: expected finite values")

    def number(x_):
        """f's value, checked: a real number, finite."""
        value = f(x_)
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
            value = value.reshape(())[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"f: expected it to return a real number, got {describe(value)}")
        if not np.isfinite(value):
            raise ValueError(f"f: returned {value} at a point x ± h; central differences need finite values")
        return value

    return gradcheck.numerical_gradient(number, x, h)


def rel_error(a, b):
    """max|a − b| / max(1e-8, max(|a| + |b|)) of two arrays of the same shape (gradcheck.rel_error)."""
    def real(x, name):       # np.longdouble kept as it is: gradcheck.rel_error computes in it
        extended = isinstance(x, np.ndarray) and x.dtype == np.longdouble
        return x if extended else as_array(x, name, finite=False, max_abs=None)

    a, b = real(a, "a"), real(b, "b")
    if a.shape != b.shape and not (a.size == b.size == 1):
        raise ValueError(f"a, b: expected arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("a, b: expected non-empty arrays")
    return gradcheck.rel_error(a, b)


# --- a researcher's density (library/mode.py, library/target.py, library/posterior.py) ------------

def find_mode(target, x0=None, dim=None):
    """A mode of the target's energy and the Laplace approximation there (library/mode.py).

    Newton's method with a line search from ``x0`` (default the origin), the Hessian by central
    differences of the gradient (itself by central differences for an energy-only target).
    Returns a planarflow.Mode (``x``, ``energy``, ``cov``, ``sd``, ``scale``), which
    ``fit(..., start=mode)`` accepts. Raises ModeNotFound when there is no isolated mode (flat or
    improper density, or a failed search), saying what was seen.
    """
    from .mode import check_search_size, find_mode as newton
    d = target_dim(target, dim)
    checked = CheckedTarget(target, d, finite=False)
    check_search_size(d, checked.has_grad)
    if x0 is not None:
        x0 = as_array(x0, "x0", shape=(d,))
    with np.errstate(all="ignore"):
        return newton(checked, x0)


def wider_sample(params, n, rng=None, widen=None):
    """n draws of the flow from a base with wider tails and their exact log-density (x (n, d),
    log q̃ (n,)): z₀ from the mixture ½N(0, I) + ½N(0, c²I), c = 1 + 3/√d (posterior.widening),
    pushed through the same layers — log q̃(x) = log m(z₀) − Σ_k log D_k (− Σ log σᵢ), as for the
    flow itself. Half the draws are the flow's own, so the weights p/q̃ ≤ 2·p/q: never heavier."""
    from .posterior import widening
    params, K, d = check_params(params)
    c = widening(d) if widen is None else widen
    rng = make_rng(rng)
    x, log_q = np.empty((n, d)), np.empty(n)
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        z0 = rng.standard_normal((m, d)) * np.where(rng.random(m) < 0.5, c, 1.0)[:, None]
        log_m = np.logaddexp(reference.std_normal_log_density(z0),
                             reference.std_normal_log_density(z0 / c) - d * np.log(c)) - np.log(2.0)
        x[i:i + m], sum_logdet, _ = lesson(params).flow_forward(params, z0)
        log_q[i:i + m] = log_m - sum_logdet
    return x, log_q


def posterior(params, target, n=20_000, rng=None, names=None, transform=None, tails=True):
    """Posterior estimates from a fitted flow: its n draws reweighted towards the target by
    Pareto-smoothed importance sampling (library/posterior.py).

    Returns a planarflow.Posterior: ``mean``, ``sd``, ``mcse`` (the means' Monte-Carlo standard
    errors), ``quantile(q, f=None)``, ``expect(f)``, ``resample(m, rng)``, ``k_hat``, ``ess``,
    ``reliable`` and ``summary()``. Warns (UnreliablePosteriorWarning) when k̂ > 0.7: the flow is
    then too far from the target for these numbers to be trusted.

    Parameters
    ----------
    params : a flow (from fit)
    target : the target it was fitted to (energy at the flow's draws; +inf gives weight 0)
    n : int ≥ 21, draws of the flow
    names : optional list of names for the summary's rows, one a coordinate — or, with a
        transform, one for each of its values (default: target.names if it has them and there
        is no transform, else x[0], x[1], …)
    transform : optional function f(z) of the draws z (n, d), returning (n,) or (n, m) real
        numbers: the model's own quantities (σ = exp(log σ), a simplex from its unconstrained
        coordinates, a prediction, …). Every estimate is then of f(z) under the same weights —
        mean, sd, mcse, quantiles, ``expect`` and ``resample`` see f(z) — and ``.z`` keeps the draws.
    tails : bool (default True): the tail check — the same estimates from n more draws of the
        flow with a wider base (wider_sample), compared beyond their Monte-Carlo errors: a flow
        whose tails fall short of the target's, which k̂ cannot see, gives different standard
        deviations there, and a TailWarning says where (library/posterior.py; ``.tails``).
    """
    from .posterior import check_tails, posterior as estimate
    params, K, d = check_params(params)
    checked = CheckedTarget(target, d, finite=False)
    n = as_int(n, "n", minimum=21, maximum=MAX_SAMPLES)
    check_size("n", n, d + K + 2)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform: expected a function of the draws z (n, d), got {describe(transform)}")
    label = "names" if names is not None else "target.names"
    names = getattr(target, "names", None) if names is None and transform is None else names
    if names is not None:
        if not isinstance(names, (list, tuple, np.ndarray)):
            raise TypeError(f"{label}: expected a list of "
                            f"{'strings' if transform is not None else f'{d} strings'}, got {describe(names)}")
        if transform is None and (len(names) != d or not all(isinstance(x, str) for x in names)):
            raise ValueError(f"{label}: expected {d} strings, one a coordinate, got {describe(names)}")
        if not all(isinstance(x, str) for x in names):
            raise ValueError(f"{label}: expected strings, one for each of the transform's values, got "
                             f"{describe(names)}")
        names = list(names)
    if not isinstance(tails, (bool, np.bool_)):
        raise TypeError(f"tails: expected True or False, got {describe(tails)}")
    rng = make_rng(rng)
    z, log_q = sample(params, n, rng)
    with np.errstate(all="ignore"):
        U = np.concatenate([checked.energy(z[i:i + CHUNK]) for i in range(0, n, CHUNK)])
    result = estimate(z, log_q, U, names, transform)
    if tails:
        x, log_q = wider_sample(params, n, rng)
        with np.errstate(all="ignore"):
            U = np.concatenate([checked.energy(x[i:i + CHUNK]) for i in range(0, n, CHUNK)])
        check_tails(result, estimate(x, log_q, U, names, transform, quiet=True))
    return result
