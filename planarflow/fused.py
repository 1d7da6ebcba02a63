"""The training step's flow: flow_forward/flow_backward's arithmetic, arranged for speed.

This module computes what ``flow.flow_forward`` and ``flow.flow_backward`` compute by calling
the layer functions one after the other — read those first — and the tests check that the two
agree to rounding (1e-12). Only the arrangement differs; each change is made for speed:

1. What does not depend on the batch — û_k and sp_k = 1 + w_kᵀû_k — is computed for all K
   layers at once (``layer.u_hat_forward`` on (K, d) arrays), outside this module.

2. Only the chain through z must loop over layers. The batch is stored transposed, z as (d, N),
   so every array operation runs along the N samples (an (N, 2) layout makes NumPy loop over
   rows of length 2). Layer k reads and writes one block of a buffer,

       X_k = [ z_k ; 1 ; q_k ]        shape (d + 2, N),    q_k = t_k − 1,  t_k = tanh(a_k)

   so that the plain lines  a_k = w_kᵀz_k + b_k  and  z_{k+1} = z_k + û_k·t_k  become one
   matrix product each:

       2a_k    = [2w_kᵀ  2b_k] · [z_k ; 1]
       z_{k+1} = [I  û_k  û_k] · [z_k ; 1 ; q_k]      ( = z_k + û_k·(1 + q_k) )

   and tanh is 1 − 2/(1 + e^{2a}), i.e. q_k = −2/(1 + e^{2a_k}): NumPy's exp is about twice as
   fast as its tanh (e^{2a} overflows harmlessly to inf for a > 354, giving q = 0, t = 1, so the
   loop silences overflow warnings). Five NumPy calls a layer forward and three backward; the
   plain form (layer.py, with û recomputed per layer) takes several times as many.

3. Everything that is elementwise in (k, n) once the t_k are known — h'_k, D_k, the log-dets,
   the log-det's part of ∂L/∂a — is computed after the loop on (K, N) arrays, and the parameter
   gradients Σₙ(…) are reduced after the backward loop, one call each.

4. The (K, N)-sized arrays live in a ``Workspace`` that the training loop keeps from step to
   step. Allocating and freeing a few megabytes every step makes the C allocator hand the
   memory back to the operating system and fault it in again page by page, which on a virtual
   machine costs as much as the arithmetic. A fresh Workspace per call gives the same numbers.

A population of flows
---------------------
The same code trains P independent flows at once (``fit(..., population=P)``, used to try
several initialisations for the price of about one). Their parameters carry a leading axis,
(P, K, d), each member has its own N samples, and the members' rows are stacked in one buffer,

    X_k = [ z_k⁽¹⁾ … z_k⁽ᴾ⁾ ; 1 ; q_k⁽¹⁾ … q_k⁽ᴾ⁾ ]          shape (P·d + 1 + P, N)

with block-diagonal matrices, so each layer is still five NumPy calls forward and three backward.
P = 1 is the layout above.
"""

import numpy as np

from .numerics import planar_sum_logdet


class Workspace:
    """Named float64 buffers reused across calls; a buffer is reallocated when its shape changes.

    Every entry of a buffer is written before it is read, so results never depend on what a
    previous call left behind. Nothing returned to the caller of reverse_kl aliases a buffer.
    """

    def __init__(self):
        self._buffers = {}

    def array(self, name, shape):
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = np.empty(shape)
        return buf


def _members_as_rows(v):
    """(P, K, d) → (K, P·d): member p's vector for layer k in columns p·d … p·d + d − 1."""
    P, K, d = v.shape
    return v.transpose(1, 0, 2).reshape(K, P * d)


def fused_forward(z0, u_hat, sp, w, b, ws=None):
    """Push z₀ through K planar layers, for P flows at once; flow.flow_forward for each.

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
    zK : ndarray, shape (P, N, d)
    sum_logdet : ndarray, shape (P, N)   Σ_k log(1 + h'(a_k)·w_kᵀû_k)
    cache : for fused_backward
    """
    ws = Workspace() if ws is None else ws
    P, K, d = w.shape
    N = z0.shape[1]
    Pd = P * d
    rows = np.repeat(np.arange(P), d)                    # member of each z row        (P·d,)
    X = ws.array("X", (K + 1, Pd + 1 + P, N))            # block k: [z_k; 1; q_k]
    X[0, :Pd] = z0.transpose(0, 2, 1).reshape(Pd, N)
    X[:, Pd] = 1.0
    WB = ws.array("WB", (K, P, Pd + 1))                  # rows [2w_kᵀ  2b_k], block-diagonal
    WB.fill(0.0)
    WB[:, rows, np.arange(Pd)] = 2.0 * _members_as_rows(w)
    WB[:, :, Pd] = 2.0 * b.T
    M = ws.array("M", (K, Pd, Pd + 1 + P))               # [I  û_k  û_k], block-diagonal
    M.fill(0.0)
    M[:, np.arange(Pd), np.arange(Pd)] = 1.0
    M[:, :, Pd] = _members_as_rows(u_hat)
    M[:, np.arange(Pd), Pd + 1 + rows] = M[:, :, Pd]
    e = ws.array("e", (P, N))
    with np.errstate(over="ignore"):
        for k in range(K):
            np.dot(WB[k], X[k, :Pd + 1], out=e)          # 2a_k                        (P, N)
            np.exp(e, out=e)
            e += 1.0
            np.divide(-2.0, e, out=X[k, Pd + 1:])        # q_k = tanh(a_k) − 1
            np.dot(M[k], X[k], out=X[k + 1, :Pd])        # z_{k+1} = z_k + û_k t_k     (P·d, N)
    # h'_k = 1 − t_k² (one pass, where layer.py's tanh_derivative takes an exp: it is accurate to
    # 4e-16 absolute, so its relative accuracy falls only where h' < 1e-8, i.e. |a| > 10), and
    # D_k = t² + h'·sp_k (numerics.planar_D), written into the workspace
    T = np.add(X[:K, Pd + 1:], 1.0, out=ws.array("T", (K, P, N)))   # t_k             (K, P, N)
    t2 = np.multiply(T, T, out=ws.array("t2", (K, P, N)))
    hp = np.subtract(1.0, t2, out=ws.array("hp", (K, P, N)))        # h'(a_k)
    D = np.multiply(hp, sp.T[:, :, None], out=ws.array("D", (K, P, N)))
    D += t2                                                         # planar_D: t² + h'·sp
    zK = X[K, :Pd].reshape(P, d, N).transpose(0, 2, 1)
    return zK, planar_sum_logdet(D, sp.T), (X, T, hp, D, u_hat, sp, w, ws)


def fused_backward(dzK, dlogdet, cache):
    """Backprop through fused_forward; flow.flow_backward for each member.

    ``dlogdet`` = ∂L/∂logdet_k⁽ⁿ⁾ is one number here, the same for every layer and sample (−1/N
    for the batch mean), which lets its factor be folded into per-layer constants.

    With gz = ∂L/∂z_{k+1} (the layer's output) and s_k = sp_k − 1, going down k = K−1..0, the
    plain per-layer lines (layer.planar_backward) are

        ga_k = h'_k·(gzᵀû_k + c_k),    c_k = −2·dlogdet·s_k·t_k/D_k   (h'_k·c_k: the log-det's part)
        gz  ← gz + w_k·ga_k                                           (∂L/∂z_k)

    Layer k keeps the block G_k = [gz ; c_k ; ga_k] of shape (d + 2, N) (for P members:
    (P·d + 2P, N), rows stacked as in the forward), so each line is one matrix product or one
    multiplication:

        gzᵀû_k + c_k = [û_kᵀ 1] · [gz ; c_k],    ga_k = h'_k·(…),    gz ← [I 0 w_k] · G_k

    and after the loop

        ∂L/∂û_k = Σₙ gz·t_k,   ∂L/∂b_k = Σₙ ga_k,   ∂L/∂w_k = Σₙ ga_k·z_k  (through a),
        ∂L/∂sp_k = Σₙ dlogdet·h'_k/D_k

    are one reduction each.

    Parameters
    ----------
    dzK : ndarray, shape (P, N, d)   ∂L/∂z_K
    dlogdet : float                  ∂L/∂logdet_k for every k and sample
    cache : from fused_forward

    Returns
    -------
    dz0 : (P, N, d), du_hat : (P, K, d), dsp : (P, K), dw : (P, K, d) (through a only), db : (P, K)
    """
    X, T, hp, D, u_hat, sp, w, ws = cache
    P, K, d = w.shape
    N = T.shape[2]
    Pd = P * d
    rows = np.repeat(np.arange(P), d)
    G = ws.array("G", (K + 1, Pd + 2 * P, N))   # block k + 1: [∂L/∂z_{k+1}; c_k; ga_k]
    G[K, :Pd] = dzK.transpose(0, 2, 1).reshape(Pd, N)    # block 0 receives ∂L/∂z_0
    C = G[1:, Pd:Pd + P]                                 # c_k                       (K, P, N)
    np.divide(T, D, out=C)
    C *= (-2.0 * dlogdet * (sp.T - 1.0))[:, :, None]
    R = np.divide(hp, D, out=ws.array("t2", (K, P, N)))  # h'/D (t²'s buffer is free now)
    dsp = dlogdet * R.sum(axis=2).T                      # Σₙ dlogdet·h'/D           (P, K)
    UH1 = ws.array("UH1", (K, P, Pd + P))                # rows [û_kᵀ  1], block-diagonal
    UH1.fill(0.0)
    UH1[:, rows, np.arange(Pd)] = _members_as_rows(u_hat)
    UH1[:, np.arange(P), Pd + np.arange(P)] = 1.0
    Q = ws.array("Q", (K, Pd, Pd + 2 * P))               # [I  0  w_k], block-diagonal
    Q.fill(0.0)
    Q[:, np.arange(Pd), np.arange(Pd)] = 1.0
    Q[:, np.arange(Pd), Pd + P + rows] = _members_as_rows(w)
    for k in reversed(range(K)):
        Gk = G[k + 1]
        np.dot(UH1[k], Gk[:Pd + P], out=Gk[Pd + P:])     # gzᵀû_k + c_k              (P, N)
        Gk[Pd + P:] *= hp[k]                             # ga_k
        np.dot(Q[k], Gk, out=G[k, :Pd])                  # ∂L/∂z_k = gz + w_k·ga_k   (P·d, N)
    GA = G[1:, Pd + P:]                                  # ga_k                      (K, P, N)
    GZ = G[1:, :Pd].reshape(K, P, d, N)                  # ∂L/∂z_{k+1}
    du_hat = np.matmul(GZ, T[:, :, :, None])[..., 0]     # Σₙ gz·t_k                 (K, P, d)
    dw = np.matmul(X[:K, :Pd].reshape(K, P, d, N), GA[:, :, :, None])[..., 0]   # Σₙ ga_k·z_k
    dz0 = G[0, :Pd].reshape(P, d, N).transpose(0, 2, 1)
    return dz0, du_hat.transpose(1, 0, 2), dsp, dw.transpose(1, 0, 2), GA.sum(axis=2).T
