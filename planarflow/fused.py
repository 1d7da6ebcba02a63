"""The training step's flow: flow_forward/flow_backward's arithmetic, arranged for speed.

This module computes what ``flow.flow_forward`` and ``flow.flow_backward`` compute by calling
the layer functions one after the other — read those first — and the tests check that the two
agree to rounding (1e-13). Only the arrangement differs; each change is made for speed:

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
   loop silences overflow warnings). Five NumPy calls a layer; the plain form takes about ten.

3. Everything that is elementwise in (k, n) once the t_k are known — h'_k, D_k, the log-dets,
   the log-det's part of ∂L/∂a — is computed after the loop on (K, N) arrays, and the parameter
   gradients Σₙ(…) are reduced after the backward loop, one call each.

4. The (K, N)-sized arrays live in a ``Workspace`` that the training loop keeps from step to
   step. Allocating and freeing a few megabytes every step makes the C allocator hand the
   memory back to the operating system and fault it in again page by page, which on a virtual
   machine costs as much as the arithmetic. A fresh Workspace per call gives the same numbers.
"""

import numpy as np

from .numerics import planar_D, planar_sum_logdet


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


def fused_forward(z0, u_hat, sp, w, b, ws=None):
    """Push z₀ through K planar layers; the same result as flow.flow_forward.

    Parameters
    ----------
    z0 : ndarray, shape (N, d)
    u_hat : ndarray, shape (K, d)   constrained vectors û_k
    sp : ndarray, shape (K,)        softplus(w_kᵀu_k) = 1 + w_kᵀû_k
    w : ndarray, shape (K, d)
    b : ndarray, shape (K,)
    ws : Workspace or None (a fresh one)

    Returns
    -------
    zK : ndarray, shape (N, d)
    sum_logdet : ndarray, shape (N,)   Σ_k log(1 + h'(a_k)·w_kᵀû_k)
    cache : for fused_backward
    """
    ws = Workspace() if ws is None else ws
    K, d = w.shape
    N = z0.shape[0]
    X = ws.array("X", (K + 1, d + 2, N))                 # block k: [z_k; 1; q_k]
    X[0, :d] = z0.T
    X[:, d] = 1.0
    WB = 2.0 * np.concatenate([w, b[:, None]], axis=1)   # [2w_k  2b_k]          (K, d + 1)
    P = np.concatenate([np.broadcast_to(np.eye(d), (K, d, d)),
                        u_hat[:, :, None], u_hat[:, :, None]], axis=2)   # [I û_k û_k] (K, d, d + 2)
    e = np.empty(N)
    with np.errstate(over="ignore"):
        for k in range(K):
            np.dot(WB[k], X[k, :d + 1], out=e)           # 2a_k                     (N,)
            np.exp(e, out=e)
            e += 1.0
            np.divide(-2.0, e, out=X[k, d + 1])          # q_k = tanh(a_k) − 1
            np.dot(P[k], X[k], out=X[k + 1, :d])         # z_{k+1} = z_k + û_k t_k  (d, N)
    # h'_k = 1 − t_k² (one pass, where layer.py's tanh_derivative takes an exp: it is accurate to
    # 4e-16 absolute, so its relative accuracy falls only where h' < 1e-8, i.e. |a| > 10), and
    # D_k = t² + h'·sp_k (numerics.planar_D), written into the workspace
    T = np.add(X[:K, d + 1], 1.0, out=ws.array("T", (K, N)))      # t_k          (K, N)
    t2 = np.multiply(T, T, out=ws.array("t2", (K, N)))
    hp = np.subtract(1.0, t2, out=ws.array("hp", (K, N)))         # h'(a_k)
    D = np.multiply(hp, sp[:, None], out=ws.array("D", (K, N)))
    D += t2                                                       # planar_D: t² + h'·sp
    return X[K, :d].T, planar_sum_logdet(D, sp), (X, T, hp, D, u_hat, sp, w, ws)


def fused_backward(dzK, dlogdet, cache):
    """Backprop through fused_forward; the same result as flow.flow_backward.

    ``dlogdet`` = ∂L/∂logdet_k⁽ⁿ⁾ is one number here, the same for every layer and sample (−1/N
    for the batch mean), which lets its factor be folded into per-layer constants.

    With gz = ∂L/∂z_{k+1} (the layer's output) and s_k = sp_k − 1, going down k = K−1..0, the
    plain per-layer lines (layer.planar_backward) are

        ga_k = h'_k·(gzᵀû_k + c_k),    c_k = −2·dlogdet·s_k·t_k/D_k   (h'_k·c_k: the log-det's part)
        gz  ← gz + w_k·ga_k                                           (∂L/∂z_k)

    Layer k keeps the block G_k = [gz ; c_k ; ga_k] of shape (d + 2, N), so each line is one
    matrix product or one multiplication:

        gzᵀû_k + c_k = [û_kᵀ 1] · [gz ; c_k],    ga_k = h'_k·(…),    gz ← [I 0 w_k] · G_k

    and after the loop

        ∂L/∂û_k = Σₙ gz·t_k,   ∂L/∂b_k = Σₙ ga_k,   ∂L/∂w_k = Σₙ ga_k·z_k  (through a),
        ∂L/∂sp_k = Σₙ dlogdet·h'_k/D_k

    are one reduction each.

    Returns
    -------
    dz0 : (N, d), du_hat : (K, d), dsp : (K,), dw : (K, d) (through a only), db : (K,)
    """
    X, T, hp, D, u_hat, sp, w, ws = cache
    K, d = w.shape
    N = T.shape[1]
    G = ws.array("G", (K + 1, d + 2, N))        # block k + 1: [∂L/∂z_{k+1}; c_k; ga_k]
    G[K, :d] = dzK.T                            # block 0 receives ∂L/∂z_0
    np.divide(T, D, out=G[1:, d])
    G[1:, d] *= (-2.0 * dlogdet * (sp - 1.0))[:, None]   # c_k                    (K, N)
    R = np.divide(hp, D, out=ws.array("t2", (K, N)))    # h'/D (t²'s buffer is free now)
    dsp = dlogdet * R.sum(axis=1)                        # Σₙ dlogdet·h'/D        (K,)
    UH1 = np.concatenate([u_hat, np.ones((K, 1))], axis=1)                      # [û_kᵀ 1]   (K, d + 1)
    Q = np.concatenate([np.broadcast_to(np.eye(d), (K, d, d)), np.zeros((K, d, 1)),
                        w[:, :, None]], axis=2)                                # [I 0 w_k]  (K, d, d + 2)
    for k in reversed(range(K)):
        Gk = G[k + 1]
        np.dot(UH1[k], Gk[:d + 1], out=Gk[d + 1])        # gzᵀû_k + c_k            (N,)
        Gk[d + 1] *= hp[k]                               # ga_k
        np.dot(Q[k], Gk, out=G[k, :d])                   # ∂L/∂z_k = gz + w_k·ga_k (d, N)
    GA = G[1:, d + 1]                                    # ga_k                    (K, N)
    du_hat = np.matmul(G[1:, :d], T[:, :, None])[:, :, 0]        # Σₙ gz·t_k
    dw = np.matmul(X[:K, :d], GA[:, :, None])[:, :, 0]           # Σₙ ga_k·z_k
    return G[0, :d].T, du_hat, dsp, dw, GA.sum(axis=1)
