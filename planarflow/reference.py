"""Planar normalizing flows fitted by reverse KL: the whole method in one file, NumPy only.

Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows": the planar layer
(eq. 10–12), its invertibility constraint (appendix A.1), the flow's density (eq. 13), the
paper's learnable base and the free-energy objective (eq. 15) — every gradient derived by hand,
directly above the lines that compute it — the path-derivative gradient, Adam and a training
loop with annealing. Copy this file alone anywhere:

    python reference.py          # fits 16 layers to U₁, prints the loss approaching −log Z
    jupytext --to ipynb reference.py       # the same as a notebook: headed sections, maths, a picture

It is also what the package runs (``import planarflow`` adds argument checks around it), so an
edit here changes planarflow's results; fused.py computes the same faster (tests/test_engines.py).

Conventions (CS231n): ``x_forward(...) -> (out, cache)``, and ``x_backward(dout, cache)`` returns
one gradient per input, in input order, shaped like it. N samples in d dimensions, K layers
(k = 1..K in formulas, rows 0..K−1 in arrays); L is the loss, gx = ∂L/∂x flows back into x.
"""

import numpy as np

# %% [markdown]
# ## 1. Three numerically stable helpers
#
#     softplus(x) = log(1 + eˣ)      as np.logaddexp(0, x): no overflow for x ≫ 0
#     h'(a) = 1 − tanh²(a) = sech²(a) = 4e/(1 + e)²,   e = e^{−2|a|} ≤ 1: never cancels, where
#             1 − tanh² keeps fewer than 8 digits for |a| > 10 and is exactly 0 for |a| > 19
#     log N(z; 0, I) = −½‖z‖² − (d/2)·log 2π

# %%
def softplus(x):
    return np.logaddexp(0.0, x)


def tanh_derivative(a):
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def std_normal_log_density(z):
    """log N(z; 0, I) for z (..., d); returns (...)."""
    return -0.5 * (z * z).sum(axis=-1) - 0.5 * z.shape[-1] * np.log(2.0 * np.pi)


# %% [markdown]
# ## 2. The invertibility constraint û(u, w)   (appendix A.1)
#
# A planar layer y = z + û·tanh(wᵀz + b) is invertible with a non-singular Jacobian when
# s = wᵀû > −1 (section 3). The paper enforces it by reparameterising a free u ∈ Rᵈ, with
# m(x) = −1 + softplus(x):
#
#     û = u + (m(wᵀu) − wᵀu)·w/‖w‖²      ⟹   wᵀû = m(wᵀu) > −1
#
# (the squared norm: with ‖w‖ the identity fails). Write û = u + c·w with
# c = (softplus(−wᵀu) − 1)/‖w‖², since softplus(x) − x = softplus(−x) exactly (no cancellation at
# wᵀu ≫ 1). The layer needs sp = softplus(wᵀu) = 1 + s rather than s, so the forward returns it.
# Backward, given gû = ∂L/∂û and gsp = ∂L/∂sp, with m′ = m′(wᵀu) = 1/(1 + e^{−wᵀu}) (the sigmoid):
#
#     ∂c/∂u = (m′ − 1)·w/‖w‖²      ∂c/∂w = ((m′ − 1)·u − 2c·w)/‖w‖²      ∂sp/∂u = m′·w    ∂sp/∂w = m′·u
#     ∂L/∂u = gû + (gû·w)(m′ − 1)·w/‖w‖² + gsp·m′·w
#     ∂L/∂w = c·gû + (gû·w)((m′ − 1)·u − 2c·w)/‖w‖² + gsp·m′·u
#
# since û = u + c·w gives ∂û/∂u = I + w(∂c/∂u)ᵀ and ∂û/∂w = c·I + w(∂c/∂w)ᵀ. m′ = e^{−softplus(−wᵀu)}
# and 1 − m′ = e^{−softplus(wᵀu)} come from the forward's two softplus values, exact for every wᵀu.

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
    """-> du, dw: the gradients of L(û, sp) with respect to u and w, shaped like them."""
    u, w, sq, c, sp_neg, sp = cache
    sig, sig_neg = np.exp(-sp_neg), np.exp(-sp)      # m′(wᵀu), 1 − m′(wᵀu)
    gw = (du_hat * w).sum(axis=-1)                   # gû·w
    coef = (dsp * sig - gw * sig_neg / sq)[..., None]      # (gû·w)(m′ − 1)/‖w‖² + gsp·m′
    du = du_hat + coef * w
    dw = c[..., None] * du_hat + coef * u - (2.0 * gw * c / sq)[..., None] * w
    return du, dw


# %% [markdown]
# ## 3. One planar layer   (eq. 10–12)
#
#     a = wᵀz + b,   t = tanh(a),   y = f(z) = z + û·t
#
# Its Jacobian is I + û·ψᵀ with ψ = h'(a)·w, and det(I + ûψᵀ) = 1 + ψᵀû (the matrix determinant lemma), so
#
#     log|det ∂f/∂z| = log|1 + h'(a)·s| = log D,    s = wᵀû = sp − 1
#
# With h' = 1 − t², D = t² + h'·sp: a sum of two non-negative terms, so D > 0 in floating point
# even where wᵀu ≪ −1 rounds s to exactly −1 — no abs(), no epsilon. The layer moves each point
# along û by tanh(wᵀz + b): the two sides of the hyperplane wᵀz + b = 0 are pushed apart (s > 0,
# the density stretched thin across it) or drawn together (−1 < s < 0, compressed into a ridge),
# smoothly and one-to-one. Backward, given gy = ∂L/∂y (N, d) and gl = ∂L/∂log D (N,), with
# h''(a) = −2t·h'(a), so that ∂y/∂a = û·h', ∂log D/∂a = −2t·h'·s/D and ∂log D/∂sp = h'/D:
#
#     ga = (gy·û)·h' − 2·gl·t·h'·s/D                         ∂L/∂a, per sample (N,)
#     ∂L/∂z = gy + ga·wᵀ    ∂L/∂b = Σₙ ga    ∂L/∂w = Σₙ ga·z    ∂L/∂û = Σₙ gy·t    ∂L/∂sp = Σₙ gl·h'/D
#
# (∂L/∂û, ∂L/∂sp) then go through u_hat_backward. w reaches the loss three ways — through a, û
# and sp — so its gradient is the sum of the three (micrograd's +=).

# %%
def planar_forward(z, u, w, b):
    """z (N, d), u and w (d,), b a number -> y (N, d), log D (N,), cache."""
    u_hat, sp, uh_cache = u_hat_forward(u, w)
    a = z @ w + b                                    # (N,)
    t = np.tanh(a)
    y = z + t[:, None] * u_hat                       # (N, d)
    hp = tanh_derivative(a)                          # h'(a)
    D = t * t + hp * sp                              # 1 + h'·wᵀû > 0
    return y, np.log(D), (z, w, u_hat, sp, t, hp, D, uh_cache)


def planar_backward(dy, dlogdet, cache):
    """dy (N, d), dlogdet (N,) -> dz (N, d), du (d,), dw (d,), db (a float)."""
    z, w, u_hat, sp, t, hp, D, uh_cache = cache
    s = sp - 1.0                                     # wᵀû
    ga = (dy @ u_hat) * hp - 2.0 * dlogdet * t * hp * s / D       # ∂L/∂a   (N,)
    dz = dy + ga[:, None] * w
    db = float(ga.sum())
    dw = ga @ z                                      # w through a
    du_hat = t @ dy                                  # û through y
    dsp = (dlogdet * hp / D).sum()                   # sp through log D
    du, dw_uh = u_hat_backward(du_hat, dsp, uh_cache)
    return dz, du, dw + dw_uh, db


# %% [markdown]
# ## 4. The flow and its density   (eq. 13)
#
#     z₀ ~ q₀ = N(0, I),   z_k = f_k(z_{k−1}),  k = 1..K
#     log q_K(z_K) = log q₀(z₀) − Σ_k log D_k          (change of variables, layer by layer)
#
# Parameters: a dict of arrays u (K, d), w (K, d), b (K,) — and, for a learnable base (section 5),
# mu (d,), log_sigma (d,), lower (d, d), applied after the layers. Backward undoes them in reverse
# order; every log-det enters the loss through the same sum, so each receives the same ∂L/∂log D.
# The flow starts at the identity: u = λ·w/‖w‖² with softplus(λ) = 1 gives û = 0 (u = 0 does not:
# û = (log 2 − 1)·w/‖w‖²); w is a random unit vector (û grows like 1/‖w‖), b ~ N(0, 1).

# %%
def flow_forward(params, z0):
    """z0 (N, d) -> z_K (N, d), Σ log-dets (N,), caches: (the K layers' caches, the base's or None)."""
    z, sum_logdet, caches, base_cache = z0, np.zeros(z0.shape[0]), [], None
    for u, w, b in zip(params["u"], params["w"], params["b"]):
        z, logdet, cache = planar_forward(z, u, w, b)
        sum_logdet = sum_logdet + logdet
        caches.append(cache)
    if "mu" in params:                               # the learnable base, after the layers
        z, logdet, base_cache = base_forward(z, params["mu"], params["log_sigma"], params["lower"])
        sum_logdet = sum_logdet + logdet
    return z, sum_logdet, (caches, base_cache)


def flow_backward(dzK, dsum_logdet, caches):
    """dzK (N, d), dsum_logdet (N,) -> dz0 (N, d), grads shaped like params."""
    (caches, base_cache), dz, grads = caches, dzK, {}
    if base_cache is not None:
        dz, grads["mu"], grads["log_sigma"], grads["lower"] = base_backward(dz, dsum_logdet, base_cache)
    du, dw, db = [], [], []
    for cache in reversed(caches):
        dz, du_k, dw_k, db_k = planar_backward(dz, dsum_logdet, cache)
        du.append(du_k)
        dw.append(dw_k)
        db.append(db_k)
    return dz, dict(grads, u=np.array(du[::-1]), w=np.array(dw[::-1]), b=np.array(db[::-1]))


def sample(params, n, rng=None):
    """n samples of q_K (n, d) and their exact log-density log q_K (n,)."""
    rng = np.random.default_rng(rng)
    z0 = rng.standard_normal((n, params["u"].shape[1]))
    zK, sum_logdet, _ = flow_forward(params, z0)
    return zK, std_normal_log_density(z0) - sum_logdet


IDENTITY_WTU = float(np.log(np.e - 1.0))            # λ: softplus(λ) = 1, so m(λ) = 0 and û = 0


def init_params(K, dim=2, rng=None, u_scale=0.1, b_scale=1.0, base=False):
    """Raw parameters of K layers near the identity map: u, w (K, dim), b (K,); with base=True
    also the learnable base at N(0, I): mu = 0, log_sigma = 0, lower = 0 (section 5)."""
    rng = np.random.default_rng(rng)
    w = rng.standard_normal((K, dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    b = b_scale * rng.standard_normal(K)
    u = IDENTITY_WTU * w + u_scale * rng.standard_normal((K, dim))
    if not base:
        return {"u": u, "w": w, "b": b}
    return {"u": u, "w": w, "b": b, "mu": np.zeros(dim), "log_sigma": np.zeros(dim), "lower": np.zeros((dim, dim))}


# %% [markdown]
# ## 5. The learnable base: a location–scale layer   (the paper's q₀ = N(μ, diag σ²), with a full A)
#
#     x = μ + A·z,    A = diag(σ) + lower,   σ = e^{log σ} > 0,   lower: strictly below the diagonal
#     log|det ∂x/∂z| = log det A = Σᵢ log σᵢ         (A is triangular)
#
# so log q(x) = log q_K(z) − Σᵢ log σᵢ. The paper draws z₀ from N(μ, diag σ²) and then applies the
# layers; we apply the affine map after them, so that the planar layers work in units of the
# target's own spread and the base carries location, scale and correlation. Measured
# (python -m planarflow benchmark --placement): with the base first, fits of real posteriors end
# with importance weights too heavy-tailed to use (k̂ above 0.7); with it last, below. A full
# triangular A, not only diag σ: posteriors correlate (−0.99 between an intercept and a slope on an
# uncentred predictor), and planar layers, each a bounded shift along one direction, cannot shear
# the whole space. Backward, with gx = ∂L/∂x and gA = gxᵀ·z (d, d):
#
#     ∂L/∂z = gx·A     ∂L/∂μ = Σₙ gx     ∂L/∂lower = the strictly lower part of gA
#     ∂L/∂log σᵢ = (gA)ᵢᵢ·σᵢ + Σₙ ∂L/∂log det

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
    gA = dx.T @ z
    return dx @ A, dx.sum(axis=0), np.diag(gA) * sigma + dlogdet.sum(), np.tril(gA, -1)


# %% [markdown]
# ## 6. A target: U₁ of the paper's Table 1, a ring with two lobes
#
#     U₁(z) = ½((‖z‖ − 2)/0.4)² − log(e^{e₁} + e^{e₂}),   e₁,₂ = −½((z₁ ∓ 2)/0.6)²
#     ∇U₁ = (‖z‖ − 2)/0.4² · z/‖z‖ − (p₁·∇e₁ + p₂·∇e₂),   ∇eᵢ = (−(z₁ ∓ 2)/0.6², 0)
#
# with the weights pᵢ = e^{eᵢ}/(e^{e₁} + e^{e₂}). The log of a sum is np.logaddexp, never
# log(exp + exp + ε) (an ε caps U and the density stops decaying). ‖z‖ has no gradient at z = 0;
# we take 0 there. A target is any object with energy(z) -> (N,) and grad(z) -> (N, d);
# planarflow/targets.py has U₂–U₄ (copy it beside this file to use them).

# %%
def logaddexp_weights(e1, e2):
    """log(e^{e₁} + e^{e₂}) and the weights pᵢ = e^{eᵢ}/(e^{e₁} + e^{e₂}), from one exponential:
    with r = e^{−|e₁ − e₂|} ≤ 1 the sum is max(e₁, e₂) + log(1 + r) and the larger eᵢ has
    weight 1/(1 + r) (np.logaddexp's own stable form, with r reused for the weights)."""
    r = np.exp(-np.abs(e1 - e2))
    p1 = np.where(e1 >= e2, 1.0, r) / (1.0 + r)
    return np.maximum(e1, e2) + np.log1p(r), p1, 1.0 - p1


def u1(z):
    """U₁ at z (N, 2) and its gradient: (U (N,), ∇U (N, 2))."""
    z1, z2 = z[:, 0], z[:, 1]
    r = np.hypot(z1, z2)
    c = np.divide(r - 2.0, 0.16 * r, out=np.zeros_like(r), where=r > 0)   # (r − 2)/(0.4²·r)
    lse, p1, p2 = logaddexp_weights(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)
    U = 0.5 * ((r - 2.0) / 0.4) ** 2 - lse
    # −(p₁·∂e₁/∂z₁ + p₂·∂e₂/∂z₁) = (p₁(z₁ − 2) + p₂(z₁ + 2))/0.6²
    return U, np.stack([c * z1 + (p1 * (z1 - 2.0) + p2 * (z1 + 2.0)) / 0.36, c * z2], axis=1)


# %% [markdown]
# ## 7. The objective: reverse KL, the variational free energy   (eq. 15)
#
#     F(θ) = E_{z₀~q₀}[ log q_K(z_K) + β·U(z_K) ] = E_{z₀}[ log q₀(z₀) − Σ_k log D_k + β·U(z_K) ]
#
# At β = 1, KL(q_K ‖ p) = F + log Z ≥ 0 with p = e^{−U}/Z: the loss never needs Z, but it is
# bounded below by −log Z, so a negative loss is correct. On a batch z₀ (N, d) drawn by the
# caller the estimate is a deterministic function of (θ, z₀) — the reparameterisation trick — so
# its gradient is an exact derivative (central differences check it) and, since z₀'s distribution
# does not depend on θ, unbiased for ∇F. Backprop starts from the batch mean:
#
#     ∂L/∂z_K⁽ⁿ⁾ = β·∇U(z_K⁽ⁿ⁾)/N,      ∂L/∂log D_k⁽ⁿ⁾ = −1/N  (the same for every layer k)

# %%
def reverse_kl(params, z0, target, beta=1.0, gradient="full"):
    """The loss on the batch z0 (N, d) and its gradient: (loss, grads shaped like params).
    gradient="path": the path-derivative estimator of section 8 instead of the full one."""
    N = z0.shape[0]
    zK, sum_logdet, caches = flow_forward(params, z0)
    U, gU = target.energy(zK), target.grad(zK)
    loss = np.mean(std_normal_log_density(z0) - sum_logdet + beta * U)
    if gradient == "path":                       # the score term dropped: log q acts through z_K only
        dzK, dlogdet = (path_score(z0, caches) + beta * gU) / N, np.zeros(N)
    else:
        dzK, dlogdet = beta * gU / N, np.full(N, -1.0 / N)
    _, grads = flow_backward(dzK, dlogdet, caches)
    return float(loss), grads


# %% [markdown]
# ## 8. Sticking the landing: the path-derivative gradient   (Roeder, Wu & Duvenaud 2017)
#
# One sample's loss ℓ(θ) = log q_θ(z_K(θ)) + β·U(z_K(θ)) depends on θ in two ways:
#
#     dℓ/dθ = ∂log q_θ(z)/∂θ |z=z_K   +   (∇_z log q_K(z_K) + β·∇U(z_K))ᵀ·∂z_K/∂θ
#
# The first, the score term, has expectation 0 (E_q[∇_θ log q_θ] = ∇_θ ∫ q_θ = ∇_θ 1 = 0) but not
# variance 0, even where q = p. Dropping it leaves an unbiased estimator whose variance vanishes
# as q → p (then ∇log q = −∇U and the second term is 0 for every sample). It needs the score
# φ_K = ∇_z log q_K(z_K), which follows the sample path forward — no inverse. From
# log q_k(z_k) = log q_{k−1}(z_{k−1}) − log D_k, the Jacobian J = I + û·ψᵀ (ψ = h'·w) and
# Sherman–Morrison's J⁻ᵀ = I − h'·w·ûᵀ/D, with ∇log D = −2t·h'·s/D·w (section 3):
#
#     φ₀ = −z₀,   φ_k = J⁻ᵀ·(φ_{k−1} + 2t·h'·s/D·w) = φ_{k−1} + c_k·w
#     c_k = (h'/D)·(2t·s/D − ûᵀφ_{k−1})                 (all at layer k; 1 − h'·s/D = 1/D)
#
# and after the base x = μ + A·z, φ = A⁻ᵀ·φ_K. Backprop then starts from ∂L/∂x = (φ + β·∇U)/N with
# every ∂L/∂log D = 0: the log-dets reach θ only through x.

# %%
def path_score(z0, caches):
    """φ = ∇ log q at the flow's outputs (N, d), from z0 and flow_forward's caches."""
    (caches, base_cache), phi = caches, -z0
    for z, w, u_hat, sp, t, hp, D, _ in caches:
        c = hp / D * (2.0 * t * (sp - 1.0) / D - phi @ u_hat)           # (N,)
        phi = phi + c[:, None] * w
    if base_cache is not None:
        phi = np.linalg.solve(base_cache[1].T, phi.T).T                 # Aᵀ·φ_x = φ_K
    return phi


# %% [markdown]
# ## 9. Adam   (Kingma & Ba 2015)
#
# With the step count τ, the gradient g and running means M of g and V of g² (self.t, self.m and
# self.v below; γ₁, γ₂ are beta1, beta2):
#
#     τ ← τ + 1,   M ← γ₁·M + (1 − γ₁)·g,   V ← γ₂·V + (1 − γ₂)·g²
#     θ ← θ − lr·M̂/(√V̂ + ε),   M̂ = M/(1 − γ₁^τ),  V̂ = V/(1 − γ₂^τ)   (bias corrections: M, V start at 0)

# %%
class Adam:
    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t, self.m, self.v = 0, {}, {}

    def step(self, params, grads):
        """Update every array of params in place from grads (a dict with the same keys)."""
        self.t += 1
        for key, g in grads.items():
            if key not in self.m:
                self.m[key], self.v[key] = np.zeros_like(g), np.zeros_like(g)
            m, v = self.m[key], self.v[key]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * (g * g)
            m_hat = m / (1.0 - self.beta1 ** self.t)
            v_hat = v / (1.0 - self.beta2 ** self.t)
            params[key] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


# %% [markdown]
# ## 10. Training: fresh noise every step, annealing, Adam
#
# β_t = min(1, 0.01 + t/T) over the first T = anneal_steps steps (the paper's §6.1): the flattened
# target e^{−β·U} lets the flow spread over every mode before it commits to U. The learning rate may
# decay from lr to lr_final along a cosine (large steps to travel, small ones to settle at the end).

# %%
def beta_schedule(t, anneal_steps):
    return min(1.0, 0.01 + t / anneal_steps) if anneal_steps else 1.0


def lr_schedule(t, steps, lr, lr_final):
    if lr_final is None or steps <= 1:
        return lr
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + np.cos(np.pi * t / (steps - 1)))


def fit(target, K, steps, batch_size, lr=1e-2, anneal_steps=0, rng=None, lr_final=None, dim=2,
        callback=None, gradient="full", params=None, objective=None, adam=None, start=0, shape=None):
    """Fit K planar layers to target; returns the parameters. callback(t, loss, beta) each step;
    gradient: "full" or "path" (section 8).

    planarflow.fit runs this very loop, through the last five arguments: params (where to start),
    objective (the loss and its gradient: reverse_kl unless given), adam and start (to continue a
    run), shape (of each step's noise: (P, N, d) for P flows at once). A callback may raise to stop."""
    rng = np.random.default_rng(rng)
    params = init_params(K, dim, rng) if params is None else params
    adam = Adam(lr) if adam is None else adam
    for t in range(start, steps):
        beta = beta_schedule(t, anneal_steps)
        adam.lr = lr_schedule(t, steps, lr, lr_final)
        z0 = rng.standard_normal(shape or (batch_size, dim))            # fresh noise every step
        loss, grads = (objective or reverse_kl)(params, z0, target, beta, gradient)
        adam.step(params, grads)
        if callback is not None:
            callback(t, loss, beta)
    return params


# %% [markdown]
# ## 11. Run it: U₁ with 16 layers (about ten seconds), then a picture of what it learned
# While β < 1 the loss is that of the flattened target e^{−β·U}, whose floor lies lower; from step
# 1000 on (β = 1) it approaches −log Z from above, and the gap that remains is the KL.

# %%
if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    if sys.argv[1:]:                                  # no arguments: -h says what it does, others are refused
        sys.exit(print(__doc__) if sys.argv[1:] in (["-h"], ["--help"]) else "usage: python reference.py (no arguments)")
    K, STEPS, BATCH, LR, LR_FINAL, ANNEAL = 16, 3000, 256, 2e-2, 5e-4, 1000
    LOG_Z = 1.8775          # log ∫ e^{−U₁} dz, by quadrature (planarflow.log_partition)
    target = SimpleNamespace(energy=lambda z: u1(z)[0], grad=lambda z: u1(z)[1])
    losses = []
    def report(t, loss, beta):
        losses.append(loss)
        if (t + 1) % 250 == 0:
            print(f"step {t + 1:5d}   β = {beta:.2f}   loss (mean of the last 250) = "
                  f"{np.mean(losses[-250:]):+.4f}   floor −log Z = {-LOG_Z:+.4f}")

    params = fit(target, K, STEPS, BATCH, lr=LR, anneal_steps=ANNEAL, rng=0, lr_final=LR_FINAL, callback=report)
    zK, log_q = sample(params, 200_000, rng=1)
    kl = np.mean(log_q + target.energy(zK)) + LOG_Z
    print(f"KL(q_K ‖ p) = loss + log Z = {kl:.4f} nats on 200 000 fresh samples (0 = a perfect fit)")

# %% [markdown]
# The true density e^{−U₁}/Z beside a histogram of the flow's samples; matplotlib is imported only
# here (without it the lesson has printed its numbers, and says why there is no picture).

# %%
if __name__ == "__main__":
    try:
        import matplotlib.pyplot as plt              # (a notebook shows the figure; a script saves it)
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib to draw one)")
    else:
        edges = np.linspace(-4.0, 4.0, 161)
        mid = 0.5 * (edges[1:] + edges[:-1])
        grid = np.stack(np.meshgrid(mid, mid), axis=-1).reshape(-1, 2)          # rows of constant z₂
        true = np.exp(-target.energy(grid) - LOG_Z).reshape(160, 160)
        learned = np.histogram2d(zK[:, 1], zK[:, 0], bins=[edges, edges], density=True)[0]
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        for ax, image, title in zip(axes, (true, learned), ("e^(−U₁)/Z", f"q_K, K = {K}: KL {kl:.3f} nats")):
            ax.imshow(image, origin="lower", extent=(-4, 4, -4, 4), vmin=0, vmax=true.max(), cmap="viridis")
            ax.set(title=title, xlabel="z₁", ylabel="z₂")
        fig.savefig("reference_u1.png", dpi=100, bbox_inches="tight")
        print("picture: reference_u1.png (the true density, left; the flow's samples, right)")
