# %% [markdown]
# # Sticking the landing: the path-derivative gradient   (Roeder, Wu & Duvenaud 2017)
#
# A lesson beside reference.py: copy it with reference.py, base.py and targets.py into one folder
# and run `python path_gradient.py`. One sample's loss L⁽ⁿ⁾(θ) = log q_θ(x(θ)) + β·U(x(θ))
# depends on θ through the density's formula and through the point x:
#
#     dL⁽ⁿ⁾/dθ = ∂log q_θ(x)/∂θ |x fixed   +   (∇ₓ log q_θ(x) + β·∇U(x))ᵀ·∂x/∂θ
#
# The first, the score term, has expectation 0 (E_q[∇_θ log q_θ] = ∇_θ ∫ q_θ = ∇_θ 1 = 0) but not
# variance 0, even where q = p. Dropping it leaves an unbiased estimator of ∇F whose variance
# vanishes as q → p: then ∇ₓ log q = −∇U at every point (β = 1), and every sample's term is 0.

# %%
import numpy as np

try:                                      # inside the package, or copied beside the other lessons
    from . import base, reference as ref, targets
except ImportError:
    import base
    import reference as ref
    import targets

# %% [markdown]
# ## 1. The score along the sample path, φ_k = ∇ log q_k(z_k)
# From log q_k(z_k) = log q_{k−1}(z_{k−1}) − log D_k and z_k = f_k(z_{k−1}), the chain rule gives
# φ_k = J⁻ᵀ·(φ_{k−1} − ∇log D_k), with the Jacobian J = I + û·ψᵀ, ψ = h′·w (reference.py §3), and
#
#     ∇log D_k = −(2t·h′·s/D)·w,    J⁻ᵀ = (I + ψ·ûᵀ)⁻¹ = I − h′·w·ûᵀ/D    (Sherman–Morrison)
#
# Multiplying out, with v = φ_{k−1} + (2t·h′·s/D)·w and ûᵀw = s:
#
#     J⁻ᵀ·v = v − (h′/D)·w·(ûᵀv) = φ_{k−1} + w·[2t·h′·s/D − (h′/D)·(ûᵀφ_{k−1} + 2t·h′·s²/D)]
#           = φ_{k−1} + w·[(2t·h′·s/D)·(1 − h′s/D) − (h′/D)·ûᵀφ_{k−1}]
#           = φ_{k−1} + w·(h′/D)·(2t·s/D − ûᵀφ_{k−1})        since 1 − h′s/D = 1/D (D = 1 + h′s)
#
# so φ₀ = −z₀ (∇ log N(0, I)) and φ_k = φ_{k−1} + λ_k·w_k, λ_k = (h′/D)·(2t·s/D − ûᵀφ_{k−1}): one
# dot product a layer, along the path, no inverse. After a base x = μ + A·z_K (base.py), ∇ₓ log q =
# A⁻ᵀ·φ_K: solve Aᵀ·φₓ = φ_K.

# %%
def path_score(params, z0):
    """φ = ∇ log q at the flow's outputs (N, d), following the sample path from z0 (N, d)."""
    u_hat, sp, _ = ref.u_hat_forward(params["u"], params["w"])
    z, phi = z0, -z0
    for u_hat_k, sp_k, w, b in zip(u_hat, sp, params["w"], params["b"]):
        a = z @ w + b                                # layer k's a, t, h′, D, as reference.py §3
        t, hp = np.tanh(a), ref.tanh_derivative(a)
        D = t * t + hp * sp_k
        lam = hp / D * (2.0 * t * (sp_k - 1.0) / D - phi @ u_hat_k)       # λ_k   (N,)
        phi = phi + lam[:, None] * w
        z = z + t[:, None] * u_hat_k
    if "mu" in params:                               # after the base: Aᵀ·φₓ = φ_K
        A = base.base_matrix(params["log_sigma"], params["lower"])
        phi = np.linalg.solve(A.T, phi.T).T
    return phi


# %% [markdown]
# ## 2. The estimator
# The loss is F's as before; its gradient drops the score term. With it dropped, log q reaches θ
# only through x, and φ carries all of that, so backprop starts from
#
#     ∂L/∂x⁽ⁿ⁾ = (φ⁽ⁿ⁾ + β·∇U(x⁽ⁿ⁾))/N,     ∂L/∂log D_k = 0 (and ∂L/∂log det A = 0)

# %%
def reverse_kl(params, z0, target, beta=1.0):
    """The loss on the batch z0 (N, d) and the path-derivative estimate of its gradient."""
    flow = base if "mu" in params else ref           # a flow with a base, or without
    N = z0.shape[0]
    x, sum_logdet, caches = flow.flow_forward(params, z0)
    U, grad_U = target.energy(x), target.grad(x)
    loss = np.mean(ref.std_normal_log_density(z0) - sum_logdet + beta * U)
    _, grads = flow.flow_backward((path_score(params, z0) + beta * grad_U) / N, np.zeros(N), caches)
    return float(loss), grads


# %% [markdown]
# ## 3. Run it: the gradient's noise near the optimum, with and without the score term
# First a flow that equals its target (the identity flow, p = N(0, I)): the path gradient is 0 on
# every batch, the full one is not. Then U₂ fitted by 16 layers: over 200 fresh batches at the
# fitted parameters, the spread of both estimates of the gradient — the same mean, less noise.

# %%
if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    if sys.argv[1:] and "ipykernel" not in sys.modules:     # (a notebook's kernel has its own)
        usage = "usage: python path_gradient.py   (the two gradients' noise; no arguments)"
        sys.exit(print(usage) if sys.argv[1:] in (["-h"], ["--help"]) else usage)
    rng = np.random.default_rng(0)
    normal = SimpleNamespace(energy=lambda z: 0.5 * (z * z).sum(axis=1), grad=lambda z: z)
    identity = ref.init_params(4, 2, 0, u_scale=0.0)                # û = 0: q = N(0, I) = p
    z0 = rng.standard_normal((256, 2))
    for name, objective in (("full", ref.reverse_kl), ("path", reverse_kl)):
        grads = objective(identity, z0, normal)[1]
        print(f"at q = p, the {name} gradient's largest entry: "
              f"{max(np.abs(g).max() for g in grads.values()):.1e}")
    K, STEPS, BATCH, BATCHES = 16, 3000, 256, 200
    target = SimpleNamespace(energy=lambda z: targets.paper_energy("U2", z)[0],
                             grad=lambda z: targets.paper_energy("U2", z)[1])
    params = ref.fit(target, K, STEPS, BATCH, lr=2e-2, lr_final=5e-4, anneal_steps=STEPS // 3,
                     rng=0, objective=reverse_kl)
    grads = {"full": [], "path": []}                 # every parameter's gradient, batch by batch
    for _ in range(BATCHES):
        z0 = rng.standard_normal((BATCH, 2))
        for name, objective in (("full", ref.reverse_kl), ("path", reverse_kl)):
            grad = objective(params, z0, target)[1]
            grads[name].append(np.concatenate([g.ravel() for g in grad.values()]))
    for name, values in grads.items():
        values = np.array(values)
        print(f"U₂, K = {K}, fitted: the {name} gradient over {BATCHES} batches of {BATCH}: its "
              f"mean's first entries {np.array2string(values.mean(axis=0)[:3], precision=4)}, "
              f"its variance summed over the parameters {values.var(axis=0, ddof=1).sum():.3g}")
    try:
        import matplotlib.pyplot as plt              # only here: without it, the numbers alone
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib to draw one)")
    else:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, values in grads.items():
            ax.hist(np.array(values)[:, 0], bins=30, alpha=0.6, label=f"{name} gradient")
        ax.set(title="∂L/∂u of the first layer, first entry, over 200 batches", ylabel="batches")
        ax.legend()
        fig.savefig("path_gradient_lesson.png", dpi=100, bbox_inches="tight")
        print("picture: path_gradient_lesson.png (the two estimates, batch by batch)")
