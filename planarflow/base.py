# %% [markdown]
# # A learnable base: a location–scale layer after the planar layers
#
# A lesson beside reference.py: copy both into one folder and run `python base.py`. The paper
# learns its base density, q₀ = N(μ, diag σ²), and applies the planar layers to it. Here the
# location and scale come *after* the layers, with a full lower-triangular matrix A so that the
# flow can also carry correlations:
#
#     x = μ + A·z_K,    A = diag(σ) + A_<,    σ = e^{log σ} > 0,   A_< strictly lower-triangular
#
# Why it matters: Adam moves each parameter by about lr a step, so planar layers that start at
# N(0, I) barely travel to a target far from the origin, or shrink to one far from unit scale;
# μ and log σ get there directly. Why after the layers: the planar layers then work in units of
# the target's own spread (measured on real posteriors: python -m planarflow benchmark --placement).

# %%
import numpy as np

try:                                      # inside the package, or copied beside reference.py
    from . import reference as ref
except ImportError:
    import reference as ref

# %% [markdown]
# ## 1. The layer x = μ + A·z and its backward pass
# A is triangular, so log|det ∂x/∂z| = log det A = Σᵢ log σᵢ, the same for every sample.
# Backward, from ∂L/∂x (N, d) and ∂L/∂log det A (N,), with ∂L/∂A = (∂L/∂x)ᵀ·z (d, d):
#
#     ∂L/∂z = ∂L/∂x·A,   ∂L/∂μ = Σₙ ∂L/∂x,   ∂L/∂A_< = the strictly lower part of ∂L/∂A
#     ∂L/∂log σᵢ = (∂L/∂A)ᵢᵢ·σᵢ + Σₙ ∂L/∂log det A        (σᵢ = e^{log σᵢ} enters A and log det A)

# %%
def base_matrix(log_sigma, lower):
    """A = diag(σ) + the strictly lower part of lower: (d, d), or (P, d, d) for P flows."""
    return np.tril(lower, -1) + np.exp(log_sigma)[..., :, None] * np.eye(log_sigma.shape[-1])


def base_forward(z, mu, log_sigma, lower):
    """z (N, d), mu (d,), log_sigma (d,), lower (d, d) -> x (N, d), log det A, cache."""
    A = base_matrix(log_sigma, lower)
    return mu + z @ A.T, log_sigma.sum(), (z, A, np.diag(A))


def base_backward(dx, dlogdet, cache):
    """dx (N, d), dlogdet (N,) -> dz (N, d), dmu (d,), dlog_sigma (d,), dlower (d, d)."""
    z, A, sigma = cache
    dA = dx.T @ z                                        # ∂L/∂A   (d, d)
    return dx @ A, dx.sum(axis=0), np.diag(dA) * sigma + dlogdet.sum(), np.tril(dA, -1)


# %% [markdown]
# ## 2. A flow with a base: its density, its samples, its objective
#
#     z₀ ~ N(0, I),   z_K = f_K ∘ … ∘ f₁(z₀),   x = μ + A·z_K
#     log q(x) = log q₀(z₀) − Σ_k log D_k − Σᵢ log σᵢ
#     F(θ) = E_{z₀}[ log q₀(z₀) − Σ_k log D_k − Σᵢ log σᵢ + β·U(x) ]
#
# Backprop starts from ∂L/∂x = β·∇U(x)/N and ∂L/∂log D_k = ∂L/∂log det A = −1/N: the base's
# backward first, then the planar layers' (reference.flow_backward) from its ∂L/∂z_K. The base
# starts at μ = 0, A = I: the flow then starts as the planar flow of reference.py.

# %%
def init_params(K, dim, rng=None, u_scale=0.1, b_scale=1.0):
    """reference.init_params's K layers, and the base at N(0, I): mu, log_sigma, lower = 0."""
    params = ref.init_params(K, dim, rng, u_scale, b_scale)
    return dict(params, mu=np.zeros(dim), log_sigma=np.zeros(dim), lower=np.zeros((dim, dim)))


def flow_forward(params, z0):
    """z0 (N, d) -> x (N, d), Σ_k log D_k + Σᵢ log σᵢ (N,), caches (the layers', the base's)."""
    zK, sum_logdet, caches = ref.flow_forward(params, z0)
    x, logdet, base_cache = base_forward(zK, params["mu"], params["log_sigma"], params["lower"])
    return x, sum_logdet + logdet, (caches, base_cache)


def flow_backward(dx, dsum_logdet, caches):
    """dx (N, d), dsum_logdet (N,) -> dz0 (N, d), grads shaped like params."""
    caches, base_cache = caches
    dzK, dmu, dlog_sigma, dlower = base_backward(dx, dsum_logdet, base_cache)
    dz0, grads = ref.flow_backward(dzK, dsum_logdet, caches)
    return dz0, dict(grads, mu=dmu, log_sigma=dlog_sigma, lower=dlower)


def sample(params, n, rng=None):
    """n samples x (n, d) of the flow with its base and their exact log-density (n,)."""
    rng = np.random.default_rng(rng)
    z0 = rng.standard_normal((n, params["u"].shape[1]))
    x, sum_logdet, _ = flow_forward(params, z0)
    return x, ref.std_normal_log_density(z0) - sum_logdet


def reverse_kl(params, z0, target, beta=1.0):
    """F on the batch z0 (N, d) for a flow with a base, and its gradient (loss, grads)."""
    N = z0.shape[0]
    x, sum_logdet, caches = flow_forward(params, z0)
    U, grad_U = target.energy(x), target.grad(x)
    loss = np.mean(ref.std_normal_log_density(z0) - sum_logdet + beta * U)
    _, grads = flow_backward(beta * grad_U / N, np.full(N, -1.0 / N), caches)
    return float(loss), grads


# %% [markdown]
# ## 3. Run it: a target far from the origin and far from unit scale
# U₁'s ring ten times wider, centred at c = (30, −20): U(x) = U₁((x − c)/10), so log Z = log Z₁ +
# 2·log 10. Sixteen planar layers alone, then the same with the base, by the same loop and settings.

# %%
if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    if sys.argv[1:] and "ipykernel" not in sys.modules:     # (a notebook's kernel has its own)
        usage = "usage: python base.py   (fits a far, wide target with and without the base)"
        sys.exit(print(usage) if sys.argv[1:] in (["-h"], ["--help"]) else usage)
    c, s, LOG_Z1 = np.array([30.0, -20.0]), 10.0, 1.8775
    target = SimpleNamespace(energy=lambda x: ref.u1((x - c) / s)[0],
                             grad=lambda x: ref.u1((x - c) / s)[1] / s)
    K, STEPS, BATCH, LR, LR_FINAL, ANNEAL = 16, 3000, 256, 5e-2, 5e-4, 1000
    settings = dict(lr=LR, lr_final=LR_FINAL, anneal_steps=ANNEAL, rng=0)
    flows = {"planar layers alone": (ref.fit(target, K, STEPS, BATCH, **settings), ref.sample),
             "with the base": (ref.fit(target, K, STEPS, BATCH, objective=reverse_kl,
                                       params=init_params(K, 2, 0), **settings), sample)}
    images = {}
    for name, (params, draw) in flows.items():
        x, log_q = draw(params, 200_000, 1)
        kl = np.mean(log_q + target.energy(x)) + LOG_Z1 + 2 * np.log(s)
        images[f"{name}: KL {kl:.3f} nats"] = x
        print(f"{name:>20}: KL(q ‖ p) = {kl:.4f} nats on 200 000 fresh samples")
    try:
        import matplotlib.pyplot as plt              # only here: without it, the numbers alone
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib to draw one)")
    else:
        box = [(c[1] - 4 * s, c[1] + 4 * s), (c[0] - 4 * s, c[0] + 4 * s)]           # rows: x₂
        mid = [np.linspace(lo, hi, 121)[:-1] + 4 * s / 120 for lo, hi in box]
        grid = np.stack(np.meshgrid(mid[1], mid[0]), axis=-1).reshape(-1, 2)
        true = np.exp(-target.energy(grid)).reshape(120, 120)
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
        panels = [("the target", true)] + [(t, np.histogram2d(x[:, 1], x[:, 0], 120, box)[0])
                                           for t, x in images.items()]
        for ax, (title, image) in zip(axes, panels):
            ax.imshow(image, origin="lower", extent=(*box[1], *box[0]), cmap="viridis")
            ax.set(title=title, xlabel="x₁", ylabel="x₂")
        fig.savefig("base_lesson.png", dpi=100, bbox_inches="tight")
        print("picture: base_lesson.png (the target; each flow's samples, on its own colour scale)")
