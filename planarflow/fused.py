"""The fast engine: reference.py's loss and gradient, arranged for speed — ``fit(engine="fused")``.

This computes what reference.reverse_kl computes, for each of P flows at once: the same
formulas, checked against it to rounding by tests/test_engines.py (read reference.py first).
Only the arrangement differs. It rests on one observation about the flow:

    z_k = z_{k−1} + û_k·t_k   ⟹   z_k = z_s + Σ_{s<j≤k} û_j·t_j   for any earlier layer s,

so the pre-activation of layer k,

    a_k = w_kᵀz_{k−1} + b_k = w_kᵀz_s + b_k + Σ_{s<j<k} (w_kᵀû_j)·t_j,

depends on the batch only through w_kᵀz_s and the numbers t_j of each sample. The layers are cut
into blocks of BLOCK; z is computed only at the blocks' ends, each with one matrix product
(z_e = z_s + Σ û_j·t_j), and within a block the chain — the only part that must run one layer
after another — works on rows of N numbers and never touches the d coordinates of z. Every
product with d in it is one matrix product per block:

    forward    W_b·z_sᵀ (B, N)       z_e = z_s + T_bᵀ·Û_b (N, d)        T = (t_k⁽ⁿ⁾), B ≤ BLOCK rows
    backward   Û_b·(∂L/∂z_e)ᵀ, T_b·∂L/∂z_e, GA_b·z_s, GA_bᵀ·W_b       GA = (∂L/∂a_k⁽ⁿ⁾)

The cost is O(K·d·N) in those products plus O(K·BLOCK·N) in the chain: linear in d, as the
math's is, and each layer of the chain is two NumPy calls forward and two backward. (BLOCK
trades the chain's rows, up to BLOCK per layer, against the per-block calls; 8 to 16 measure
best here; BLOCK = 1 would be the plain layer-by-layer order.) Below, s..e are a block's layers.

Forward. With M_kj = w_kᵀû_j for s < j < k and E_k = w_kᵀz_s + b_k,

    a_k = E_k + Σ_{s<j<k} M_kj·t_j,     t_k = tanh(a_k).

The rows of T start as E; layer k computes a_k = [M_k,s..k−1  1]·T_{s..k} — the 1 picks up E_k,
still in row k — and overwrites row k with t_k.

Backward. With gz_k = ∂L/∂z_k = ∂L/∂z_e + Σ_{k<j≤e} w_j·ga_j (reference.planar_backward's
dz = dy + ga·wᵀ, unrolled through the block) and κ_k = −2·dlogdet·s_k the log-det's part
(dlogdet = ∂L/∂log D_k is one number for every layer and sample, −1/N),

    ga_k = h'_k·(gz_kᵀû_k + κ_k·t_k/D_k) = h'_k·(Q_k + Σ_{k<j≤e} (w_jᵀû_k)·ga_j),
    Q_k = û_kᵀ·∂L/∂z_e + κ_k·t_k/D_k,

computed for k = e..s in a buffer GA that starts as Q, the same way. Then, with
Ω = GA_b·T_bᵀ (Ω_jk = Σₙ ga_j·t_k) and Ω_< its strictly lower part,

    ∂L/∂û_k = Σₙ gz_k·t_k     = (T_b·∂L/∂z_e + Ω_<ᵀ·W_b)_k
    ∂L/∂w_k = Σₙ ga_k·z_{k−1}  = (GA_b·z_s + Ω_<·Û_b)_k            (w through a)
    ∂L/∂z_s = ∂L/∂z_e + GA_bᵀ·W_b,   ∂L/∂b_k = Σₙ ga_k,   ∂L/∂sp_k = Σₙ dlogdet·h'_k/D_k.

Elementwise details, also arranged for speed: h'_k = 1 − t_k², one pass, where
reference.tanh_derivative takes an exp (accurate to 4e-16 absolutely: its relative accuracy
suffers only where h' < 1e-8, |a| > 10, where h' multiplies everything it enters), and
Σ_k log D_k as log Π_k D_k when that is safe (``sum_logdet``). The buffers live in a
``Workspace`` kept from step to step, with each layer's views made once (``Layout``):
allocating a few megabytes every step makes the C allocator return memory to the operating
system and fault it in again, which on a virtual machine costs as much as the arithmetic.

A population of P flows (``fit(..., population=P)``) carries a leading member axis on every
array, (P, K, d) and (P, K, N), and every product is one np.matmul over the members; for P = 1
the layer loop uses np.dot on the member's 2-D views (a little cheaper per call).
"""

import numpy as np

from . import base, reference


BLOCK = 12         # layers per block: the chain reads at most BLOCK rows a layer (measured, see above)


class Workspace:
    """The engine's buffers, kept from call to call; rebuilt when the shapes change.

    Results never depend on what a previous call left behind: every entry a call reads was
    written by that call, except constants (the masks) written when the layout is built.
    """

    def __init__(self):
        self._layout = None

    def layout(self, P, K, d, N):
        """The Layout for these shapes (built on first use and whenever the shapes change)."""
        if self._layout is None or self._layout.shape != (P, K, d, N):
            self._layout = Layout(P, K, d, N)
        return self._layout


class Layout:
    """The buffers of fused_forward/fused_backward for P flows of K layers in d dimensions, N
    samples each, and each layer's views into them (slicing costs about as much as a small NumPy
    call, so the views are made once). Rows are layers k = 1..K at index k − 1; the layers are
    cut into blocks of at most BLOCK, rows s..e−1.

        T, t2, hp, D, GA     (P, K, N)       E then t_k;  t_k² (later κ_k·t_k/D_k);  h'_k;  D_k;  Q then ga_k
        C, B                 (P, K, K)       [M | 1] within each block, and its backward counterpart
        Z                    (n + 1, P, N, d) z at each block's start (Z[0] = z₀) and z_K
        Gz                   (P, N, d)       ∂L/∂z at the current block's end
        e                    (P, 1, N)       scratch for one layer
        HD, R2, Cs, S, G                     the path score (fused_score): h'_k/D_k, 2t_k·s_k/D_k, Q then
                                             λ_k, [−û_kᵀw_j | 1] within each block, φ at a block's end
    """

    def __init__(self, P, K, d, N):
        self.shape = (P, K, d, N)
        self.blocks = [(s, min(s + BLOCK, K)) for s in range(0, K, BLOCK)]
        self.T, self.t2, self.hp, self.D, self.GA = (np.empty((P, K, N)) for _ in range(5))
        self.C, self.B = np.empty((P, K, K)), np.empty((P, K, K))
        self.Z = np.empty((len(self.blocks) + 1, P, N, d))
        self.Gz = np.empty((P, N, d))
        self.e = np.empty((P, 1, N))
        self.HD, self.R2, self.Cs = (np.empty((P, K, N)) for _ in range(3))     # the path score's chain
        self.S = np.empty((P, K, K))
        self.G = np.empty((P, N, d))
        self.lower = np.zeros((K, K))                        # j < k within one block
        for s, e in self.blocks:
            self.lower[s:e, s:e] = np.tri(e - s, e - s, -1)
        self.eye = np.eye(K)
        self.product = np.dot if P == 1 else np.matmul
        one = (lambda a: a[0]) if P == 1 else (lambda a: a)   # drop the member axis when P = 1
        C, B, T, GA, hp, e = self.C, self.B, self.T, self.GA, self.hp, self.e
        self.forward_views = [[tuple(one(a) for a in (C[:, k:k + 1, s:k + 1], T[:, s:k + 1], e, T[:, k:k + 1]))
                               for k in range(s, e_)] for s, e_ in self.blocks]
        self.backward_views = [[tuple(one(a) for a in (B[:, k:k + 1, k:e_], GA[:, k:e_], e, hp[:, k:k + 1], GA[:, k:k + 1]))
                                for k in reversed(range(s, e_))] for s, e_ in self.blocks]
        S, Cs, HD = self.S, self.Cs, self.HD
        self.score_views = [[tuple(one(a) for a in (S[:, k:k + 1, s:k + 1], Cs[:, s:k + 1], e, HD[:, k:k + 1], Cs[:, k:k + 1]))
                             for k in range(s, e_)] for s, e_ in self.blocks]


def fused_forward(z0, u_hat, sp, w, b, ws=None):
    """Push z₀ through K planar layers, for P flows at once (reference.flow_forward for each).

    Parameters
    ----------
    z0 : ndarray, shape (P, N, d)
    u_hat : ndarray, shape (P, K, d)   constrained vectors û_k
    sp : ndarray, shape (P, K)         softplus(w_kᵀu_k) = 1 + w_kᵀû_k
    w : ndarray, shape (P, K, d)
    b : ndarray, shape (P, K)
    ws : Workspace or None (a fresh one)

    Returns
    -------
    zK : ndarray, shape (P, N, d)        (a view of the workspace: valid until its next use)
    sum_logdet : ndarray, shape (P, N)   Σ_k log(1 + h'(a_k)·w_kᵀû_k)
    cache : for fused_backward
    """
    ws = Workspace() if ws is None else ws
    P, K, d = w.shape
    N = z0.shape[1]
    lay = ws.layout(P, K, d, N)
    C, T, Z = lay.C, lay.T, lay.Z
    np.matmul(w, u_hat.transpose(0, 2, 1), out=C)        # M_kj = w_kᵀû_j                (P, K, K)
    C *= lay.lower                                       # j < k in k's block
    C += lay.eye                                         # [M_k,s..k−1  1]
    Z[0] = z0
    product, tanh = lay.product, np.tanh                 # (out passed by position: the cheapest call)
    for i, (s, e_) in enumerate(lay.blocks):
        np.matmul(w[:, s:e_], Z[i].transpose(0, 2, 1), out=T[:, s:e_])    # w_kᵀz_s
        T[:, s:e_] += b[:, s:e_, None]                                     # E_k
        for c, t_upto, e, t in lay.forward_views[i]:
            product(c, t_upto, e)                        # a_k = E_k + Σ_{s<j<k} M_kj·t_j
            tanh(e, t)                                   # t_k
        np.matmul(T[:, s:e_].transpose(0, 2, 1), u_hat[:, s:e_], out=Z[i + 1])
        Z[i + 1] += Z[i]                                 # z_e = z_s + Σ_{s<k≤e} û_k·t_k   (P, N, d)
    # h'_k = 1 − t_k² (see above) and D_k = t² + h'·sp_k (reference.planar_forward's form)
    t2 = np.multiply(T, T, out=lay.t2)
    hp = np.subtract(1.0, t2, out=lay.hp)
    D = np.multiply(hp, sp[:, :, None], out=lay.D)
    D += t2
    return Z[-1], sum_logdet(D, sp), (lay, u_hat, sp, w)


def sum_logdet(D, sp):
    """Σ_k log D_k over the layers (axis 1) for D of shape (P, K, N) and sp of shape (P, K).

    Computed as log Π_k D_k — one log per sample instead of K, and logs are the costliest
    operation of a training step — whenever the product cannot leave float64's range.
    That is known in advance: D = t² + h'·sp with t² + h' = 1 is a convex combination of 1 and
    sp, so min(1, sp_k) ≤ D_k ≤ max(1, sp_k), and every partial product of the D_k lies between
    Π min(1, sp_k) and Π max(1, sp_k). When Σ_k |log sp_k| < 600 these are within e^{±600},
    safely inside float64's normal range (e^{±708}), and the product's relative error is at
    most K·ε, the same order as summing K rounded logs. Otherwise the logs are summed directly.
    """
    if sp.min() > 0 and np.abs(np.log(sp)).sum(axis=1).max() < 600.0:
        return np.log(D.prod(axis=1))
    return np.log(D).sum(axis=1)


def fused_backward(dzK, dlogdet, cache):
    """Backprop through fused_forward (reference.flow_backward for each member).

    Parameters
    ----------
    dzK : ndarray, shape (P, N, d)   ∂L/∂z_K
    dlogdet : float                  ∂L/∂log D_k for every k and sample
    cache : from fused_forward

    Returns
    -------
    dz0 : (P, N, d), du_hat : (P, K, d), dsp : (P, K), dw : (P, K, d) (through a only), db : (P, K)
    """
    lay, u_hat, sp, w = cache
    T, hp, D, GA, B, Z, Gz = lay.T, lay.hp, lay.D, lay.GA, lay.B, lay.Z, lay.Gz
    P, K, d, N = lay.shape
    if dlogdet:                                          # (0 for the path gradient: no log-det part)
        kappa_t_D = np.divide(T, D, out=lay.t2)          # t_k/D_k (t²'s buffer is free now)
        kappa_t_D *= (-2.0 * dlogdet * (sp - 1.0))[:, :, None]      # κ_k·t_k/D_k
    np.subtract(lay.C, lay.eye, out=B)                   # M_jk = w_jᵀû_k, j > k in a block …
    np.copyto(B, B.transpose(0, 2, 1))                   # … as row k
    B += lay.eye                                         # [1  w_jᵀû_k for j > k]
    du_hat, dw = np.empty((P, K, d)), np.empty((P, K, d))
    np.copyto(Gz, dzK)
    product, multiply = lay.product, np.multiply
    for i in reversed(range(len(lay.blocks))):
        s, e_ = lay.blocks[i]
        GA_b, T_b = GA[:, s:e_], T[:, s:e_]
        np.matmul(u_hat[:, s:e_], Gz.transpose(0, 2, 1), out=GA_b)      # û_kᵀ·∂L/∂z_e
        if dlogdet:
            GA_b += kappa_t_D[:, s:e_]                                    # Q_k
        for b_row, ga_from, e, hp_k, ga in lay.backward_views[i]:        # k = e..s
            product(b_row, ga_from, e)                   # Q_k + Σ_{k<j<e} (w_jᵀû_k)·ga_j
            multiply(e, hp_k, ga)                        # ga_k
        Om = np.matmul(GA_b, T_b.transpose(0, 2, 1))     # Ω_jk = Σₙ ga_j·t_k
        Om *= lay.lower[s:e_, s:e_]                      # Ω_<
        np.matmul(T_b, Gz, out=du_hat[:, s:e_])          # Σₙ gz_k·t_k …
        du_hat[:, s:e_] += np.matmul(Om.transpose(0, 2, 1), w[:, s:e_])
        np.matmul(GA_b, Z[i], out=dw[:, s:e_])           # Σₙ ga_k·z_{k−1} …
        dw[:, s:e_] += np.matmul(Om, u_hat[:, s:e_])
        Gz += np.matmul(GA_b.transpose(0, 2, 1), w[:, s:e_])             # ∂L/∂z_s
    dsp = dlogdet * np.divide(hp, D, out=lay.t2).sum(axis=2) if dlogdet else np.zeros((P, K))   # Σₙ dlogdet·h'/D
    return Gz, du_hat, dsp, dw, GA.sum(axis=2)


def fused_score(z0, cache):
    """φ_K = ∇ log q_K(z_K) along the sample path (path_gradient.path_score for each member), in
    the blocks of the forward pass. path_gradient.py's recursion φ_k = φ_{k−1} + λ_k·w_k has z's
    structure, φ_k = φ_s + Σ_{s<j≤k} λ_j·w_j, so within a block

        λ_k = (h'_k/D_k)·(2t_k·s_k/D_k − û_kᵀφ_s − Σ_{s<j<k} (û_kᵀw_j)·λ_j)

    runs on rows of N numbers — a buffer row starts as Q_k = 2t_k·s_k/D_k − û_kᵀφ_s and row k
    of [−û_kᵀw_j | 1] turns it into the bracket, as in the forward pass — and the block's end is
    one product, φ_e = φ_s + C_bᵀ·W_b. Returns φ_K (P, N, d), a view of the workspace."""
    lay, u_hat, sp, w = cache
    Cs, S, G = lay.Cs, lay.S, lay.G
    np.divide(lay.hp, lay.D, out=lay.HD)                                   # h'_k/D_k
    R2 = np.multiply(lay.T, (2.0 * (sp - 1.0))[:, :, None], out=lay.R2)
    R2 /= lay.D                                                            # 2t_k·s_k/D_k
    np.matmul(u_hat, w.transpose(0, 2, 1), out=S)                          # û_kᵀw_j
    S *= -lay.lower
    S += lay.eye                                                           # [−û_kᵀw_j  1]
    np.negative(z0, out=G)                                                 # φ₀ = −z₀
    product, multiply = lay.product, np.multiply
    for i, (s, e_) in enumerate(lay.blocks):
        C_b = Cs[:, s:e_]
        np.matmul(u_hat[:, s:e_], G.transpose(0, 2, 1), out=C_b)          # û_kᵀφ_s
        np.subtract(R2[:, s:e_], C_b, out=C_b)                            # Q_k
        for row, c_upto, e, hd, c in lay.score_views[i]:
            product(row, c_upto, e)                      # Q_k − Σ_j (û_kᵀw_j)·λ_j
            multiply(e, hd, c)                           # λ_k
        G += np.matmul(C_b.transpose(0, 2, 1), w[:, s:e_])                # φ_e = φ_s + Σ λ_k·w_k
    return G


def base_members(params, zK):
    """base.base_forward for each member: x = μ + A·z_K with A = diag(σ) + lower (P, d, d).
    Returns x (P, N, d), the log-dets Σᵢ log σᵢ (P,) and A."""
    A = base.base_matrix(params["log_sigma"], params["lower"])
    return params["mu"][:, None, :] + np.matmul(zK, A.transpose(0, 2, 1)), params["log_sigma"].sum(axis=1), A


def reverse_kl_members(params, z0, target, beta, ws=None, gradient="full"):
    """reference.reverse_kl (base.reverse_kl for a flow with a base; path_gradient.reverse_kl for
    gradient="path") for each of P flows: params u, w (P, K, d), b (P, K) — and, with a learnable
    base, mu (P, d), log_sigma (P, d), lower (P, d, d); z0 (P, N, d).

    Returns the losses (P,) and a dict of gradients shaped like params; the gradient of member
    p depends on member p only. The target sees all members' points at once, (P·N, d), through
    ``energy_and_grad`` (one call instead of two). ``ws`` is the engine's Workspace, kept by the
    training loop from step to step; gradient="path": path_gradient.py's estimator (fused_score).
    """
    P, N, d = z0.shape
    u_hat, sp, uh_cache = reference.u_hat_forward(params["u"], params["w"])      # (P, K, d), (P, K)
    zK, sum_logdet, cache = fused_forward(z0, u_hat, sp, params["w"], params["b"], ws)
    x = zK
    if "mu" in params:                                   # the learnable base (base.py)
        x, base_logdet, A = base_members(params, zK)
        sum_logdet = sum_logdet + base_logdet[:, None]
    U, gU = target.energy_and_grad(x.reshape(P * N, d))
    # the batch mean of each member's terms, as sums / N (np.mean costs several sums here)
    losses = (reference.std_normal_log_density(z0) - sum_logdet + beta * U.reshape(P, N)).sum(axis=1) / N
    dx = (beta / N) * gU.reshape(P, N, d)                # ∂L/∂x                     (P, N, d)
    dlogdet = -1.0 / N                                   # ∂L/∂log D_k, for every layer and sample
    if gradient == "path":                               # (path_gradient.py: φ + β∇U, no log-det part)
        g = fused_score(z0, cache)
        if "mu" in params:                               # Aᵀ·φ_x = φ_K
            g = np.linalg.solve(A.transpose(0, 2, 1), g.transpose(0, 2, 1)).transpose(0, 2, 1)
        dx += g / N
        dlogdet = 0.0
    grads = {}
    if "mu" in params:                                   # base.base_backward, per member
        gA = np.matmul(dx.transpose(0, 2, 1), zK)        # gxᵀ·z_K                   (P, d, d)
        grads = {"mu": dx.sum(axis=1), "log_sigma": np.diagonal(gA, axis1=1, axis2=2) * np.exp(params["log_sigma"])
                 + N * dlogdet, "lower": np.tril(gA, -1)}          # (Σₙ ∂L/∂log det = N·dlogdet)
        dx = np.matmul(dx, A)
    _, du_hat, dsp, dw, db = fused_backward(dx, dlogdet, cache)
    du, dw_uh = reference.u_hat_backward(du_hat, dsp, uh_cache)
    return losses, dict(grads, u=du, w=dw + dw_uh, b=db)
