"""The paper's test energies (Table 1), their gradients, and the box wall that makes them proper.

    ω₁(z) = sin(2π·z₁/4)                 (the paper's w₁, w₂, w₃: here ω, as w is a layer's weight)
    ω₂(z) = 3·exp(−½((z₁ − 1)/0.6)²)
    ω₃(z) = 3·logistic((z₁ − 1)/0.3),  logistic(x) = 1/(1 + e⁻ˣ)
    U₁(z) = ½((‖z‖ − 2)/0.4)² − log(e^{−½((z₁−2)/0.6)²} + e^{−½((z₁+2)/0.6)²})     (reference.u1)
    U₂(z) = ½((z₂ − ω₁)/0.4)²
    U₃(z) = −log(e^{−½((z₂−ω₁)/0.35)²} + e^{−½((z₂−ω₁+ω₂)/0.35)²})
    U₄(z) = −log(e^{−½((z₂−ω₁)/0.4)²}  + e^{−½((z₂−ω₁+ω₃)/0.35)²})

Each function here maps points z (N, 2) to (U (N,), ∇U (N, 2)); every log of a sum goes
through reference.logaddexp_weights. ``planarflow.get_target(name)`` wraps them as a target
object — anything with ``energy(z) -> (N,)`` and ``grad(z) -> (N, d)``, in any dimension d, is
a target — with its arguments checked (planarflow/library/api.py).

The box wall
------------
exp(−U₂), exp(−U₃) and exp(−U₄) do not decay along z₁: their Z is infinite, the reverse-KL
loss has no lower bound, and a flow trained on them stretches along z₁ for ever. The paper draws
all four on (−4, 4)². planarflow's targets add a wall that is zero inside that box,

    wall(z) = ½ Σᵢ (max(|zᵢ| − box, 0)/width)²,     ∂wall/∂zᵢ = sign(zᵢ)·max(|zᵢ| − box, 0)/width²

which makes every target proper (it moves U₁'s log Z by less than 1e-5). box=None gives the
paper's formulas exactly.
"""

import numpy as np

try:                                # inside the package, or copied beside reference.py
    from . import reference
except ImportError:
    import reference


def _omega1(z1):
    """ω₁ = sin(2π·z₁/4) and ω₁′ = dω₁/dz₁ = (π/2)·cos(2π·z₁/4)."""
    x = 0.5 * np.pi * z1
    return np.sin(x), 0.5 * np.pi * np.cos(x)


def _omega2(z1):
    """ω₂ = 3·exp(−½((z₁ − 1)/0.6)²) and ω₂′ = −ω₂·(z₁ − 1)/0.6²."""
    v = 3.0 * np.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return v, v * (1.0 - z1) / 0.36


def _omega3(z1):
    """ω₃ = 3·logistic(x), x = (z₁ − 1)/0.3, and ω₃′ = 3·logistic′(x)/0.3, through tanh:
    logistic(x) = (1 + tanh(x/2))/2 and logistic′(x) = h′(x/2)/4, neither of which overflows."""
    half = 0.5 * (z1 - 1.0) / 0.3
    return 1.5 * (1.0 + np.tanh(half)), 2.5 * reference.tanh_derivative(half)     # 3/(4·0.3) = 2.5


def u2(z):
    """U₂ = ½((z₂ − ω₁)/0.4)² and ∇U₂ = ζ·(−ω₁′, 1), ζ = (z₂ − ω₁)/0.4²."""
    omega1, omega1_prime = _omega1(z[:, 0])
    zeta = (z[:, 1] - omega1) / 0.16
    grad = np.empty_like(z)
    grad[:, 0], grad[:, 1] = -zeta * omega1_prime, zeta
    return 0.5 * 0.16 * zeta * zeta, grad


def _two_branches(z, shift, shift_prime, rho1, rho2):
    """−log(e^{e₁} + e^{e₂}), e₁ = −½(r₁/ρ₁)², r₁ = z₂ − ω₁, and e₂ = −½(r₂/ρ₂)², r₂ = r₁ + shift.

    ∇e₁ = −(r₁/ρ₁²)·(−ω₁′, 1) and ∇e₂ = −(r₂/ρ₂²)·(−ω₁′ + shift′, 1), so with the weights pᵢ and
    ζᵢ = pᵢ·rᵢ/ρᵢ²:   ∇U = −(p₁∇e₁ + p₂∇e₂) = (−(ζ₁ + ζ₂)·ω₁′ + ζ₂·shift′,  ζ₁ + ζ₂).
    """
    omega1, omega1_prime = _omega1(z[:, 0])
    r1 = z[:, 1] - omega1
    r2 = r1 + shift
    lse, p1, p2 = reference.logaddexp_weights(-0.5 * (r1 / rho1) ** 2, -0.5 * (r2 / rho2) ** 2)
    zeta2 = p2 * r2 / rho2 ** 2
    zeta = p1 * r1 / rho1 ** 2 + zeta2                       # ζ₁ + ζ₂
    grad = np.empty_like(z)
    grad[:, 0], grad[:, 1] = zeta2 * shift_prime - zeta * omega1_prime, zeta
    return -lse, grad


def u3(z):
    """U₃ = −log(e^{−½((z₂−ω₁)/0.35)²} + e^{−½((z₂−ω₁+ω₂)/0.35)²}) and its gradient."""
    return _two_branches(z, *_omega2(z[:, 0]), 0.35, 0.35)


def u4(z):
    """U₄ = −log(e^{−½((z₂−ω₁)/0.4)²} + e^{−½((z₂−ω₁+ω₃)/0.35)²}) and its gradient."""
    return _two_branches(z, *_omega3(z[:, 0]), 0.4, 0.35)


def u1(z):
    """U₁ and its gradient: reference.u1 (the lesson's running example lives there)."""
    return reference.u1(z)


ENERGIES = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}


def box_wall(z, box, width):
    """wall(z) = ½ Σᵢ (max(|zᵢ| − box, 0)/width)² and its gradient, for z of shape (N, d)."""
    excess = np.maximum(np.abs(z) - box, 0.0)               # (N, d)
    return 0.5 * np.sum((excess / width) ** 2, axis=1), np.copysign(excess, z) / width ** 2


def paper_energy(name, z, box=4.0, wall=0.2):
    """U_name(z) + wall(z) and its gradient for z (N, 2); box=None: the paper's U exactly."""
    U, grad = ENERGIES[name](z)
    if box is not None:                 # the wall is zero in the box: add it to the rows outside
        out = np.flatnonzero(np.maximum(np.abs(z[:, 0]), np.abs(z[:, 1])) > box)
        if out.size:
            U_wall, grad_wall = box_wall(z[out], box, wall)
            U[out] += U_wall
            grad[out] += grad_wall
    return U, grad


def gaussian(z, mean, std):
    """U(z) = ½ Σᵢ ((zᵢ − μᵢ)/σᵢ)² and ∇U = (z − μ)/σ², a diagonal Gaussian in any dimension.

    Its log Z = Σᵢ log σᵢ + (d/2)·log 2π is known in closed form, which makes it the target on
    which an exact fit (KL = 0, loss = −log Z) can be checked."""
    r = (z - mean) / std
    return 0.5 * (r * r).sum(axis=1), r / std
