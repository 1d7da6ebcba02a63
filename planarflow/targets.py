"""Unnormalised target densities p(z) = exp(−U(z))/Z: the four energies of the paper's Table 1.

    w₁(z) = sin(2π·z₁/4)
    w₂(z) = 3·exp(−½((z₁ − 1)/0.6)²)
    w₃(z) = 3·σ((z₁ − 1)/0.3)
    U₁(z) = ½((‖z‖ − 2)/0.4)² − log(e^{−½((z₁−2)/0.6)²} + e^{−½((z₁+2)/0.6)²})
    U₂(z) = ½((z₂ − w₁)/0.4)²
    U₃(z) = −log(e^{−½((z₂−w₁)/0.35)²} + e^{−½((z₂−w₁+w₂)/0.35)²})
    U₄(z) = −log(e^{−½((z₂−w₁)/0.4)²}  + e^{−½((z₂−w₁+w₃)/0.35)²})

Each energy comes with its analytic gradient; every log of a sum is np.logaddexp.

What a target is
----------------
Anywhere planarflow takes a ``target`` it accepts any object with

    energy(z) -> ndarray (N,)      U at each row of z, shape (N, d)
    grad(z)   -> ndarray (N, d)    ∇U at each row

in any dimension d; a ``dim`` attribute, when present, is checked against the flow, and a
``name`` is used in messages. An object may also offer ``energy_and_grad(z) -> (U, ∇U)``, which
training then calls once instead of the two methods (the targets here do).

The box wall
------------
exp(−U₂), exp(−U₃) and exp(−U₄) do not decay along z₁: their Z is infinite, the reverse-KL
loss has no lower bound and a flow trained on them stretches along z₁ for ever. The paper draws
all four on (−4, 4)². planarflow's targets add a wall that is zero inside that box,

    wall(z) = ½ Σᵢ (max(|zᵢ| − box, 0)/width)²,     ∂wall/∂zᵢ = sign(zᵢ)·max(|zᵢ| − box, 0)/width²

which makes every target proper (it moves U₁'s log Z by less than 1e-5). ``box=None`` gives the
paper's formulas exactly.
"""

import numpy as np

from .numerics import sigmoid_pair
from .validation import as_array, as_float, check_points

HALF_PI = 0.5 * np.pi


def _w1(z1):
    """w₁ = sin(2π·z₁/4) and dw₁/dz₁ = (π/2)·cos(2π·z₁/4)."""
    x = HALF_PI * z1
    return np.sin(x), HALF_PI * np.cos(x)


def _w2(z1):
    """w₂ = 3·exp(−½((z₁ − 1)/0.6)²) and dw₂/dz₁ = −w₂·(z₁ − 1)/0.6²."""
    v = 3.0 * np.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return v, v * (1.0 - z1) / 0.36


def _w3(z1):
    """w₃ = 3·σ(x), x = (z₁ − 1)/0.3, and dw₃/dz₁ = 3·σ(x)·σ(−x)/0.3."""
    s, s_neg = sigmoid_pair((z1 - 1.0) / 0.3)
    return 3.0 * s, 10.0 * s * s_neg                    # 3/0.3 = 10


def _neg_logaddexp(e1, e2):
    """−log(e^{e₁} + e^{e₂}) and the weights p₁ = e^{e₁}/(e^{e₁} + e^{e₂}), p₂ = 1 − p₁.

    The gradient of −log(e^{e₁} + e^{e₂}) is −(p₁·∇e₁ + p₂·∇e₂). With r = e^{−|e₁ − e₂|} ≤ 1,
        log(e^{e₁} + e^{e₂}) = max(e₁, e₂) + log1p(r),   p₁ = 1/(1 + r) if e₁ ≥ e₂ else r/(1 + r)
    — np.logaddexp's own stable form, with its e^{−|e₁ − e₂|} reused for the weights.
    """
    diff = e1 - e2
    r = np.exp(-np.abs(diff))
    p1 = np.where(diff >= 0, 1.0, r) / (1.0 + r)
    return -(np.maximum(e1, e2) + np.log1p(r)), p1, 1.0 - p1


def _gradient(g1, g2):
    """∇U from its two components (N,), as an (N, 2) array (a transposed (2, N) one)."""
    g = np.empty((2, g1.shape[0]))
    g[0] = g1
    g[1] = g2
    return g.T


def u1(z):
    """U₁ (a ring with two lobes) and ∇U₁ at z of shape (N, 2).

    ring = ½((r − 2)/0.4)², r = ‖z‖:  ∇ring = (r − 2)/0.4² · z/r  (taken as 0 at z = 0, where
    ‖z‖ has no derivative).  Lobes: eᵢ = −½((z₁ ∓ 2)/0.6)², ∇eᵢ = (−(z₁ ∓ 2)/0.6², 0).
    """
    z1, z2 = z[:, 0], z[:, 1]
    r = np.hypot(z1, z2)
    ring = 0.5 * ((r - 2.0) / 0.4) ** 2
    c = np.divide(r - 2.0, 0.16 * r, out=np.zeros_like(r), where=r > 0)    # (r − 2)/(0.4²·r)
    lobes, p1, p2 = _neg_logaddexp(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)
    # −(p₁·∂e₁/∂z₁ + p₂·∂e₂/∂z₁) = (p₁(z₁ − 2) + p₂(z₁ + 2))/0.36 = (z₁ + 2(p₂ − p₁))/0.36
    return ring + lobes, _gradient(c * z1 + (z1 + 2.0 * (p2 - p1)) / 0.36, c * z2)


def u2(z):
    """U₂ = ½((z₂ − w₁)/0.4)² and ∇U₂ = (z₂ − w₁)/0.4² · (−w₁', 1)."""
    w1, dw1 = _w1(z[:, 0])
    c = (z[:, 1] - w1) / 0.16
    return 0.5 * 0.16 * c * c, _gradient(-c * dw1, c)


def _two_branches(z, shift, dshift, s1, s2):
    """−log(e^{e₁} + e^{e₂}) with e₁ = −½(r₁/s₁)², r₁ = z₂ − w₁ and e₂ = −½(r₂/s₂)², r₂ = r₁ + shift.

    ∇e₁ = −(r₁/s₁²)·(−w₁', 1) and ∇e₂ = −(r₂/s₂²)·(−w₁' + shift', 1), so with the weights pᵢ and
    cᵢ = pᵢ·rᵢ/sᵢ²:   ∇U = (−(c₁ + c₂)·w₁' + c₂·shift',  c₁ + c₂).
    """
    w1, dw1 = _w1(z[:, 0])
    r1 = z[:, 1] - w1
    r2 = r1 + shift
    U, p1, p2 = _neg_logaddexp(-0.5 * (r1 / s1) ** 2, -0.5 * (r2 / s2) ** 2)
    c2 = p2 * r2 / s2 ** 2
    c = p1 * r1 / s1 ** 2 + c2
    return U, _gradient(c2 * dshift - c * dw1, c)


def u3(z):
    """U₃ = −log(e^{−½((z₂−w₁)/0.35)²} + e^{−½((z₂−w₁+w₂)/0.35)²}) and its gradient."""
    return _two_branches(z, *_w2(z[:, 0]), 0.35, 0.35)


def u4(z):
    """U₄ = −log(e^{−½((z₂−w₁)/0.4)²} + e^{−½((z₂−w₁+w₃)/0.35)²}) and its gradient."""
    return _two_branches(z, *_w3(z[:, 0]), 0.4, 0.35)


def box_wall(z, box, width):
    """wall(z) = ½ Σᵢ (max(|zᵢ| − box, 0)/width)² and its gradient, for z of shape (N, d)."""
    excess = np.maximum(np.abs(z) - box, 0.0)               # (N, d)
    return 0.5 * np.sum((excess / width) ** 2, axis=1), np.copysign(excess, z) / width ** 2


ENERGIES = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}


class PaperTarget:
    """One of the paper's energies U1–U4 in 2-D, optionally inside the box wall.

    Attributes: ``name``, ``dim`` (= 2), ``box`` (half-width, or None), ``wall`` (width).
    Methods: ``energy(z)`` (N,), ``grad(z)`` (N, 2), ``energy_and_grad(z)``; z has shape (N, 2).
    """

    dim = 2

    def __init__(self, name, box=4.0, wall=0.2):
        if not isinstance(name, str) or name not in ENERGIES:
            raise ValueError(f"name: expected one of {sorted(ENERGIES)}, got {name!r}")
        self.name = name
        self.box = None if box is None else as_float(box, "box", low=0.0, low_open=True)
        self.wall = as_float(wall, "wall", low=0.0, low_open=True)
        self._fn = ENERGIES[name]

    def __repr__(self):
        return f"get_target({self.name!r}, box={self.box!r}, wall={self.wall!r})"

    def _energy_and_grad(self, z):
        """U(z) and ∇U(z) without argument checks (the training loop's entry)."""
        U, g = self._fn(z)
        if self.box is not None and np.abs(z).max() > self.box:   # the wall is 0 inside the box
            Uw, gw = box_wall(z, self.box, self.wall)
            U, g = U + Uw, g + gw
        return U, g

    def energy_and_grad(self, z):
        """U(z) of shape (N,) and ∇U(z) of shape (N, 2) for z of shape (N, 2)."""
        return self._energy_and_grad(check_points(z, "z", 2))

    def energy(self, z):
        """U(z), shape (N,), for z of shape (N, 2)."""
        return self.energy_and_grad(z)[0]

    def grad(self, z):
        """∇U(z), shape (N, 2), for z of shape (N, 2)."""
        return self.energy_and_grad(z)[1]


class Gaussian:
    """A diagonal Gaussian target U(z) = ½ Σᵢ ((zᵢ − μᵢ)/σᵢ)² in any dimension.

    Its normaliser is known in closed form, log Z = Σᵢ log σᵢ + (d/2)·log 2π, so it is the target
    on which an exact fit (KL = 0, loss = −log Z) can be checked; exposed as ``log_z``.
    """

    def __init__(self, mean, std):
        self.mean = as_array(mean, "mean", ndim=1)
        self.std = as_array(std, "std", shape=self.mean.shape)
        if self.mean.size < 1 or np.any(self.std <= 0):
            raise ValueError(f"std: expected positive entries, got {self.std}")
        self.dim = self.mean.size
        self.name = f"Gaussian{self.dim}d"
        self.log_z = float(np.sum(np.log(self.std)) + 0.5 * self.dim * np.log(2 * np.pi))

    def _energy_and_grad(self, z):
        r = (z - self.mean) / self.std
        return 0.5 * np.einsum("nd,nd->n", r, r), r / self.std

    def energy_and_grad(self, z):
        return self._energy_and_grad(check_points(z, "z", self.dim))

    def energy(self, z):
        return self.energy_and_grad(z)[0]

    def grad(self, z):
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
