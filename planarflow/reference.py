# %% [markdown]
# # Planar normalizing flows fitted by reverse KL: the whole method, NumPy only
#
# Rezende & Mohamed (2015): the planar layer (eq. 10–12), its constraint (appendix A.1), the
# flow's density (eq. 13), the free energy (eq. 15), Adam and a training loop — every gradient
# derived by hand above the lines that compute it. Copy this file alone and run `python
# reference.py`, or open it as a notebook (docs/notebook.md). planarflow runs this very code.
# As in CS231n, `x_forward(...) -> (out, cache)` and `x_backward(dout, cache)` -> one gradient per
# input, in order; N samples in d dimensions, K layers; L is the loss, `dx` in the code is ∂L/∂x.

# %% [markdown]
# ## 1. Three numerically stable helpers
#     softplus(x) = log(1 + eˣ)   as np.logaddexp(0, x): no overflow for x ≫ 0
#     h′(a) = 1 − tanh²(a) = 4ν/(1 + ν)²,  ν = e^{−2|a|}: exact where 1 − tanh² cancels (|a| > 10)
#     log N(z; 0, I) = −½‖z‖² − (d/2)·log 2π

# %%
import numpy as np


def softplus(x):
    return np.logaddexp(0.0, x)


def tanh_derivative(a):
    nu = np.exp(-2.0 * np.abs(a))
    return 4.0 * nu / ((1.0 + nu) * (1.0 + nu))


def std_normal_log_density(z):
    """log N(z; 0, I) for z (..., d); returns (...)."""
    return -0.5 * (z * z).sum(axis=-1) - 0.5 * z.shape[-1] * np.log(2.0 * np.pi)

# %% [markdown]
# ## 2. The invertibility constraint û(u, w)   (appendix A.1)
# The layer (section 3) is invertible when s = wᵀû > −1. The paper reparameterises a free u:
#
#     û = u + (m(wᵀu) − wᵀu)·w/‖w‖²,  m(x) = −1 + softplus(x)  ⟹  s = m(wᵀu) > −1   (‖w‖², not ‖w‖)
#
# So û = u + c·w, c = (softplus(−wᵀu) − 1)/‖w‖² (softplus(x) − x = softplus(−x): no cancellation),
# and the layer gets sp = softplus(wᵀu) = 1 + s. Backward, with m′ = 1/(1 + e^{−wᵀu}) (logistic),
# ∂c/∂u = (m′ − 1)·w/‖w‖², ∂c/∂w = ((m′ − 1)·u − 2c·w)/‖w‖², ∂sp/∂u = m′·w, ∂sp/∂w = m′·u and
# ∂û/∂u = I + w(∂c/∂u)ᵀ, ∂û/∂w = c·I + w(∂c/∂w)ᵀ:
#
#     ∂L/∂u = ∂L/∂û + (∂L/∂û·w)(m′ − 1)·w/‖w‖² + ∂L/∂sp·m′·w
#     ∂L/∂w = c·∂L/∂û + (∂L/∂û·w)((m′ − 1)·u − 2c·w)/‖w‖² + ∂L/∂sp·m′·u
#     m′ = e^{−softplus(−wᵀu)},  1 − m′ = e^{−softplus(wᵀu)}   (exactly, from the forward's values)

# %%
def u_hat_forward(u, w):
    """u, w (..., d), rows of w non-zero -> û (..., d), sp = softplus(wᵀu) (...), cache."""
    wtu = (w * u).sum(axis=-1)                       # wᵀu              (...)
    sq = (w * w).sum(axis=-1)                        # ‖w‖²
    sp_neg = softplus(-wtu)                          # softplus(−wᵀu) = m(wᵀu) − wᵀu + 1
    c = (sp_neg - 1.0) / sq
    u_hat = u + c[..., None] * w                     # (..., d)
    sp = softplus(wtu)                               # 1 + wᵀû > 0
    return u_hat, sp, (u, w, sq, c, sp_neg, sp)


def u_hat_backward(du_hat, dsp, cache):
    """-> du, dw: ∂L/∂u and ∂L/∂w from ∂L/∂û and ∂L/∂sp, shaped like u and w."""
    u, w, sq, c, sp_neg, sp = cache
    m_prime, one_minus = np.exp(-sp_neg), np.exp(-sp)      # m′(wᵀu), 1 − m′(wᵀu)
    du_hat_w = (du_hat * w).sum(axis=-1)             # ∂L/∂û·w
    coef = (dsp * m_prime - du_hat_w * one_minus / sq)[..., None]   # see ∂L/∂u above
    du = du_hat + coef * w
    dw = c[..., None] * du_hat + coef * u - (2.0 * du_hat_w * c / sq)[..., None] * w
    return du, dw

# %% [markdown]
# ## 3. One planar layer   (eq. 10–12)
#     a = wᵀz + b,   t = tanh(a),   y = f(z) = z + û·t
#
# The Jacobian is I + û·ψᵀ, ψ = h′(a)·w, and det(I + ûψᵀ) = 1 + ψᵀû: log|det| = log(1 + h′·s) =
# log D. With h′ = 1 − t², D = t² + h′·sp: two non-negative terms, so D > 0 even where s rounds to
# −1 (no abs(), no ε). Backward, from ∂L/∂y (N, d) and ∂L/∂log D (N,), with h″ = −2t·h′:
#
#     ∂L/∂a = (∂L/∂y·û)·h′ − 2·∂L/∂log D·t·h′·s/D                    per sample (N,)
#     ∂L/∂z = ∂L/∂y + ∂L/∂a·wᵀ,  ∂L/∂b = Σₙ ∂L/∂a,  ∂L/∂w = Σₙ ∂L/∂a·z  (through a)
#     ∂L/∂û = Σₙ ∂L/∂y·t,  ∂L/∂sp = Σₙ ∂L/∂log D·h′/D   (then through u_hat_backward)
#     w reaches the loss through a, û and sp: its gradient sums three (micrograd's +=)

# %%
def planar_forward(z, u, w, b):
    """z (N, d), u and w (d,), b a number -> y (N, d), log D (N,), cache."""
    u_hat, sp, uh_cache = u_hat_forward(u, w)
    a = z @ w + b                                    # (N,)
    t = np.tanh(a)
    y = z + t[:, None] * u_hat                       # (N, d)
    hp = tanh_derivative(a)                          # h′(a)
    D = t * t + hp * sp                              # 1 + h′·wᵀû > 0
    return y, np.log(D), (z, w, u_hat, sp, t, hp, D, uh_cache)


def planar_backward(dy, dlogdet, cache):
    """dy (N, d), dlogdet (N,) -> dz (N, d), du (d,), dw (d,), db (a float)."""
    z, w, u_hat, sp, t, hp, D, uh_cache = cache
    da = (dy @ u_hat) * hp - 2.0 * dlogdet * t * hp * (sp - 1.0) / D    # ∂L/∂a, s = sp − 1  (N,)
    dz = dy + da[:, None] * w
    dw = da @ z                                      # w through a
    du_hat = t @ dy                                  # û through y
    dsp = (dlogdet * hp / D).sum()                   # sp through log D
    du, dw_uh = u_hat_backward(du_hat, dsp, uh_cache)
    return dz, du, dw + dw_uh, float(da.sum())       # db = Σₙ ∂L/∂a

# %% [markdown]
# ## 4. The flow and its density   (eq. 13)
#     z₀ ~ q₀ = N(0, I),   z_k = f_k(z_{k−1}),  k = 1..K
#     log q_K(z_K) = log q₀(z₀) − Σ_k log D_k          (change of variables, layer by layer)
#
# u, w (K, d), b (K,); backward in reverse order, all layers with one ∂L/∂log D. The flow starts at
# the identity, û = 0: wᵀu = log(e − 1), u along w (u = 0 gives û ≠ 0), w a random unit vector.

# %%
def flow_forward(params, z0):
    """z0 (N, d) -> z_K (N, d), Σ_k log D_k (N,), the K layers' caches."""
    z, sum_logdet, caches = z0, np.zeros(z0.shape[0]), []
    for u, w, b in zip(params["u"], params["w"], params["b"]):
        z, logdet, cache = planar_forward(z, u, w, b)
        sum_logdet = sum_logdet + logdet
        caches.append(cache)
    return z, sum_logdet, caches


def flow_backward(dzK, dsum_logdet, caches):
    """dzK (N, d), dsum_logdet (N,) -> dz0 (N, d), grads {u, w, b} shaped like params."""
    dz, layers = dzK, []
    for cache in reversed(caches):                   # layer K first
        dz, *layer = planar_backward(dz, dsum_logdet, cache)
        layers.append(layer)                         # (du, dw, db) of one layer
    du, dw, db = (np.array(g[::-1]) for g in zip(*layers))
    return dz, {"u": du, "w": dw, "b": db}


def sample(params, n, rng=None):
    """n samples of q_K (n, d) and their exact log-density log q_K (n,)."""
    rng = np.random.default_rng(rng)
    z0 = rng.standard_normal((n, params["u"].shape[1]))
    zK, sum_logdet, _ = flow_forward(params, z0)
    return zK, std_normal_log_density(z0) - sum_logdet


def init_params(K, dim=2, rng=None, u_scale=0.1, b_scale=1.0):
    """u, w (K, dim), b (K,) for K layers near the identity map."""
    rng = np.random.default_rng(rng)
    w = rng.standard_normal((K, dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    b = b_scale * rng.standard_normal(K)
    u = np.log(np.e - 1.0) * w + u_scale * rng.standard_normal((K, dim))    # wᵀu ≈ log(e − 1)
    return {"u": u, "w": w, "b": b}

# %% [markdown]
# ## 5. A target: U₁ of the paper's Table 1, a ring with two lobes
#     U₁(z) = ½((‖z‖ − 2)/0.4)² − log(e^{e₁} + e^{e₂}),   e₁,₂ = −½((z₁ ∓ 2)/0.6)²
#     ∇U₁ = (‖z‖ − 2)/0.4² · z/‖z‖ + (p₁(z₁ − 2) + p₂(z₁ + 2))/0.6² · (1, 0)
#
# with pᵢ = e^{eᵢ}/(e^{e₁} + e^{e₂}) from χ = e^{−|e₁ − e₂|}: the log of the sum is max(e₁, e₂) +
# log(1 + χ), the larger eᵢ's weight 1/(1 + χ); ∇‖z‖ = 0 at z = 0. (targets.py has U₂–U₄.)

# %%
def logaddexp_weights(e1, e2):
    """log(e^{e₁} + e^{e₂}) and the weights p₁, p₂, from one exponential χ = e^{−|e₁ − e₂|}."""
    chi = np.exp(-np.abs(e1 - e2))
    p1 = np.where(e1 >= e2, 1.0, chi) / (1.0 + chi)
    return np.maximum(e1, e2) + np.log1p(chi), p1, 1.0 - p1


def u1(z):
    """U₁ at z (N, 2) and its gradient: (U (N,), ∇U (N, 2))."""
    z1, z2 = z[:, 0], z[:, 1]
    norm = np.hypot(z1, z2)                                                   # ‖z‖
    radial = np.divide(norm - 2.0, 0.16 * norm, out=np.zeros_like(norm), where=norm > 0)
    lse, p1, p2 = logaddexp_weights(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)
    U = 0.5 * ((norm - 2.0) / 0.4) ** 2 - lse
    return U, np.stack([radial * z1 + (p1 * (z1 - 2.0) + p2 * (z1 + 2.0)) / 0.36, radial * z2], 1)

# %% [markdown]
# ## 6. The objective: reverse KL, the variational free energy   (eq. 15)
#     F(θ) = E_{z₀~q₀}[ log q_K(z_K) + β·U(z_K) ] = E_{z₀}[ log q₀(z₀) − Σ_k log D_k + β·U(z_K) ]
#
# At β = 1, KL(q_K ‖ p) = F + log Z ≥ 0, p = e^{−U}/Z: no Z needed, and the loss is bounded below
# by −log Z (often negative). On a batch z₀ (N, d) it is a deterministic function of (θ, z₀) — the
# reparameterisation trick — so its gradient is exact and unbiased for ∇F. Backprop starts from
#
#     ∂L/∂z_K⁽ⁿ⁾ = β·∇U(z_K⁽ⁿ⁾)/N,      ∂L/∂log D_k⁽ⁿ⁾ = −1/N  (the same for every layer k)

# %%
def reverse_kl(params, z0, target, beta=1.0):
    """The loss on the batch z0 (N, d) and its gradient: (loss, grads shaped like params)."""
    N = z0.shape[0]
    zK, sum_logdet, caches = flow_forward(params, z0)
    U, grad_U = target.energy(zK), target.grad(zK)
    loss = np.mean(std_normal_log_density(z0) - sum_logdet + beta * U)
    _, grads = flow_backward(beta * grad_U / N, np.full(N, -1.0 / N), caches)
    return float(loss), grads

# %% [markdown]
# ## 7. Adam   (Kingma & Ba 2015)
# With the step count τ, dθ = ∂L/∂θ and running means M of dθ, V of dθ² (`tau`, `m`, `v`; γ₁, γ₂
# are `beta1`, `beta2`), and bias corrections since M and V start at 0:
#
#     τ ← τ + 1,   M ← γ₁·M + (1 − γ₁)·dθ,   V ← γ₂·V + (1 − γ₂)·dθ²
#     θ ← θ − lr·M̂/(√V̂ + ε),   M̂ = M/(1 − γ₁^τ),  V̂ = V/(1 − γ₂^τ)

# %%
class Adam:
    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.tau, self.m, self.v = 0, {}, {}

    def step(self, params, grads):
        """Update every array of params in place from grads (a dict with the same keys)."""
        self.tau += 1
        for key, dtheta in grads.items():                        # M and V start at 0
            m = self.beta1 * self.m.get(key, 0.0) + (1.0 - self.beta1) * dtheta
            v = self.beta2 * self.v.get(key, 0.0) + (1.0 - self.beta2) * (dtheta * dtheta)
            self.m[key], self.v[key] = m, v
            m_hat = m / (1.0 - self.beta1 ** self.tau)
            v_hat = v / (1.0 - self.beta2 ** self.tau)
            params[key] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

# %% [markdown]
# ## 8. Training: fresh noise every step, annealing, Adam
# β_τ = min(1, 0.01 + τ/T) at step τ for T = anneal_steps (§6.1): the flattened e^{−β·U} lets the
# flow cover every mode first. lr may decay to lr_final; planarflow.fit runs this very loop.

# %%
def beta_schedule(step, anneal_steps):
    return min(1.0, 0.01 + step / anneal_steps) if anneal_steps else 1.0


def lr_schedule(step, steps, lr, lr_final):
    if lr_final is None or steps <= 1:
        return lr
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + np.cos(np.pi * step / (steps - 1)))


def fit(target, K, steps, batch_size, lr=1e-2, anneal_steps=0, rng=None, lr_final=None, dim=2,
        callback=None, params=None, objective=None, adam=None, start=0, shape=None):
    """Fit K planar layers to target; returns the parameters. callback(step, loss, beta) after
    every step (it may raise to stop); objective(params, z0, target, beta) -> (loss, grads)."""
    rng = np.random.default_rng(rng)
    params = init_params(K, dim, rng) if params is None else params
    adam = Adam(lr) if adam is None else adam
    for step in range(start, steps):
        beta = beta_schedule(step, anneal_steps)
        adam.lr = lr_schedule(step, steps, lr, lr_final)
        z0 = rng.standard_normal(shape or (batch_size, dim))             # fresh noise every step
        loss, grads = (objective or reverse_kl)(params, z0, target, beta)
        adam.step(params, grads)
        if callback is not None:
            callback(step, loss, beta)
    return params

# %% [markdown]
# ## 9. Run it: U₁ with 16 layers, and a picture of what it learned
# While β < 1 the loss is the flattened target's (a lower floor); from step 1000 it nears −log Z,
# and the gap left is the KL. Then the true density beside a histogram of the flow's samples.

# %%
if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    if sys.argv[1:] and "ipykernel" not in sys.modules:     # (a notebook's kernel has its own)
        usage = "usage: python reference.py   (fits 16 planar layers to U₁; takes no arguments)"
        sys.exit(print(usage) if sys.argv[1:] in (["-h"], ["--help"]) else usage)
    K, STEPS, BATCH, LR, LR_FINAL, ANNEAL = 16, 3000, 256, 2e-2, 5e-4, 1000
    LOG_Z = 1.8775          # log ∫ e^{−U₁} dz, by quadrature (planarflow.log_partition)
    target = SimpleNamespace(energy=lambda z: u1(z)[0], grad=lambda z: u1(z)[1])
    losses = []

    def report(step, loss, beta):                    # a line every 250 steps
        losses.append(loss)
        if (step + 1) % 250 == 0:
            print(f"step {step + 1:5d}   β = {beta:.2f}   loss (mean of the last 250) = "
                  f"{np.mean(losses[-250:]):+.4f}   floor −log Z = {-LOG_Z:+.4f}")

    params = fit(target, K, STEPS, BATCH, lr=LR, anneal_steps=ANNEAL, rng=0, lr_final=LR_FINAL,
                 callback=report)
    zK, log_q = sample(params, 200_000, rng=1)
    kl = np.mean(log_q + target.energy(zK)) + LOG_Z
    print(f"KL(q_K ‖ p) = loss + log Z = {kl:.4f} nats on 200 000 fresh samples "
          f"(0 = a perfect fit)")
    try:
        import matplotlib.pyplot as plt              # only here: without it, the numbers alone
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib to draw one)")
    else:
        mid = np.linspace(-3.975, 3.975, 160)           # the centres of 160 × 160 cells of (−4, 4)²
        grid = np.stack(np.meshgrid(mid, mid), axis=-1).reshape(-1, 2)     # rows of constant z₂
        true = np.exp(-target.energy(grid) - LOG_Z).reshape(160, 160)
        learned = np.histogram2d(zK[:, 1], zK[:, 0], 160, [(-4, 4), (-4, 4)], density=True)[0]
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        for ax, image, title in zip(axes, (true, learned),
                                    ("e^(−U₁)/Z", f"q_K, K = {K}: KL {kl:.3f} nats")):
            ax.imshow(image, origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
            ax.set(title=title, xlabel="z₁", ylabel="z₂")
        fig.savefig("reference_u1.png", dpi=100, bbox_inches="tight")
        print("picture: reference_u1.png (the true density, left; the flow's samples, right)")
