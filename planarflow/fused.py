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

4. The buffers live in a ``Workspace`` that the training loop keeps from step to step, with
   their constant entries written once and each layer's slices made once (``Layout``).
   Allocating and freeing a few megabytes every step makes the C allocator hand the memory
   back to the operating system and fault it in again page by page, which on a virtual machine
   costs as much as the arithmetic. A fresh Workspace per call gives the same numbers.

A population of flows
---------------------
The same code trains P independent flows at once (``fit(..., population=P)``, used to try
several initialisations for the price of a few). Their parameters carry a leading axis,
(P, K, d), each member has its own N samples, and every buffer gets a member axis after the
layer axis: X_k becomes (P, d + 2, N), the matrices (P, ·, ·), and each product is one
``np.matmul`` over the P members. P = 1 is the layout above, with np.dot (a little cheaper per
call than np.matmul).
"""

import numpy as np

from .numerics import planar_sum_logdet


class Workspace:
    """The fused code's buffers, kept from call to call; rebuilt when the shapes change.

    Holds one ``Layout`` for the current shapes (P, K, d, N). Results never depend on what a
    previous call left behind: every entry a call reads was written by that call, except the
    constant entries (the identity blocks, the row of ones, a zero), which are written once when
    the layout is built and never overwritten.
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
    samples each, with their constant entries filled in, and each layer's views into them
    (slicing an array costs about as much as a small NumPy call, so the views are made once).

        X  (K + 1, P, d + 2, N)    block k = [z_k ; 1 ; q_k]
        WB (K, P, 1, d + 1)        [2w_kᵀ  2b_k]
        M  (K, P, d, d + 2)        [I  û_k  û_k]
        G  (K + 1, P, d + 2, N)    block k + 1 = [∂L/∂z_{k+1} ; t_k/D_k ; ga_k]
        UH (K, P, 1, d + 1)        [û_kᵀ  κ_k]
        Q  (K, P, d, d + 2)        [I  0  w_k]
        T, t2, hp, D  (K, P, N)    t_k, t_k², h'(a_k), D_k

    A layer's views drop the member axis when P = 1, and ``product`` is np.dot then (np.matmul
    otherwise): both compute the same matrix products.
    """

    def __init__(self, P, K, d, N):
        self.shape = (P, K, d, N)
        eye = np.eye(d)
        self.X = np.empty((K + 1, P, d + 2, N))
        self.X[:, :, d] = 1.0
        self.WB = np.empty((K, P, 1, d + 1))
        self.M = np.empty((K, P, d, d + 2))
        self.M[:, :, :, :d] = eye
        self.G = np.empty((K + 1, P, d + 2, N))
        self.UH = np.empty((K, P, 1, d + 1))
        self.Q = np.empty((K, P, d, d + 2))
        self.Q[:, :, :, :d] = eye
        self.Q[:, :, :, d] = 0.0
        self.e = np.empty((P, 1, N))
        self.T, self.t2, self.hp, self.D = (np.empty((K, P, N)) for _ in range(4))
        self.product = np.dot if P == 1 else np.matmul
        one = (lambda a: a[0]) if P == 1 else (lambda a: a)   # drop the member axis when P = 1
        X, G, hp = self.X, self.G, self.hp.reshape(K, P, 1, N)
        self.forward_views = [tuple(one(a) for a in (self.WB[k], X[k, :, :d + 1], self.e, X[k, :, d + 1:],
                                                     self.M[k], X[k], X[k + 1, :, :d]))
                              for k in range(K)]
        self.backward_views = [tuple(one(a) for a in (self.UH[k], G[k + 1, :, :d + 1], G[k + 1, :, d + 1:],
                                                      hp[k], self.Q[k], G[k + 1], G[k, :, :d]))
                               for k in reversed(range(K))]


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
    cache : for fused_backward (views of the workspace: valid until its next call)
    """
    ws = Workspace() if ws is None else ws
    P, K, d = w.shape
    N = z0.shape[1]
    lay = ws.layout(P, K, d, N)
    X = lay.X
    X[0, :, :d] = z0.transpose(0, 2, 1)                  # z₀ of each member          (P, d, N)
    uh_k = u_hat.transpose(1, 0, 2)                      # layer axis first          (K, P, d)
    lay.WB[:, :, 0, :d] = 2.0 * w.transpose(1, 0, 2)
    lay.WB[:, :, 0, d] = 2.0 * b.T
    lay.M[:, :, :, d] = uh_k
    lay.M[:, :, :, d + 1] = uh_k
    product, exp, add, divide = lay.product, np.exp, np.add, np.divide   # (out passed by position:
    with np.errstate(over="ignore"):                                     #  the cheapest call)
        for wb, z1, e, q, m, x, z_next in lay.forward_views:
            product(wb, z1, e)                           # 2a_k = [2w_kᵀ 2b_k]·[z_k; 1]
            exp(e, e)
            add(e, 1.0, e)
            divide(-2.0, e, q)                           # q_k = tanh(a_k) − 1
            product(m, x, z_next)                        # z_{k+1} = z_k + û_k t_k
    # h'_k = 1 − t_k² (one pass, where layer.py's tanh_derivative takes an exp: it is accurate to
    # 4e-16 absolute, so its relative accuracy falls only where h' < 1e-8, i.e. |a| > 10), and
    # D_k = t² + h'·sp_k (numerics.planar_D)
    T = np.add(X[:K, :, d + 1], 1.0, out=lay.T)                     # t_k             (K, P, N)
    t2 = np.multiply(T, T, out=lay.t2)
    hp = np.subtract(1.0, t2, out=lay.hp)                           # h'(a_k)
    D = np.multiply(hp, sp.T[:, :, None], out=lay.D)
    D += t2                                                         # planar_D: t² + h'·sp
    zK = X[K, :, :d].transpose(0, 2, 1)
    return zK, planar_sum_logdet(D, sp.T), (lay, uh_k, sp, w)


def fused_backward(dzK, dlogdet, cache):
    """Backprop through fused_forward; flow.flow_backward for each member.

    ``dlogdet`` = ∂L/∂logdet_k⁽ⁿ⁾ is one number here, the same for every layer and sample (−1/N
    for the batch mean), which lets its factor be folded into per-layer constants.

    With gz = ∂L/∂z_{k+1} (the layer's output) and s_k = sp_k − 1, going down k = K−1..0, the
    plain per-layer lines (layer.planar_backward) are

        ga_k = h'_k·(gzᵀû_k + κ_k·t_k/D_k),    κ_k = −2·dlogdet·s_k    (the log-det's part)
        gz  ← gz + w_k·ga_k                                            (∂L/∂z_k)

    Layer k keeps the block G_k = [gz ; t_k/D_k ; ga_k] of shape (d + 2, N), so each line is one
    matrix product or one multiplication:

        gzᵀû_k + κ_k·t_k/D_k = [û_kᵀ κ_k] · [gz ; t_k/D_k],    ga_k = h'_k·(…),    gz ← [I 0 w_k] · G_k

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
    lay, uh_k, sp, w = cache
    P, K, d, N = lay.shape
    X, G, T, hp, D = lay.X, lay.G, lay.T, lay.hp, lay.D
    G[K, :, :d] = dzK.transpose(0, 2, 1)                 # ∂L/∂z_K                   (P, d, N)
    np.divide(T, D, out=G[1:, :, d])                     # t_k/D_k                   (K, P, N)
    R = np.divide(hp, D, out=lay.t2)                     # h'/D (t²'s buffer is free now)
    dsp = dlogdet * R.sum(axis=2).T                      # Σₙ dlogdet·h'/D           (P, K)
    lay.UH[:, :, 0, :d] = uh_k
    lay.UH[:, :, 0, d] = -2.0 * dlogdet * (sp.T - 1.0)   # κ_k
    lay.Q[:, :, :, d + 1] = w.transpose(1, 0, 2)
    product, multiply = lay.product, np.multiply
    for uh, gz_c, ga, hp_k, q, g, gz_prev in lay.backward_views:
        product(uh, gz_c, ga)                            # gzᵀû_k + κ_k·t_k/D_k
        multiply(ga, hp_k, ga)                           # ga_k
        product(q, g, gz_prev)                           # ∂L/∂z_k = gz + w_k·ga_k
    GA = G[1:, :, d + 1]                                 # ga_k                      (K, P, N)
    du_hat = np.matmul(G[1:, :, :d], T[:, :, :, None])[..., 0]          # Σₙ gz·t_k  (K, P, d)
    dw = np.matmul(X[:K, :, :d], GA[:, :, :, None])[..., 0]             # Σₙ ga_k·z_k
    dz0 = G[0, :, :d].transpose(0, 2, 1)
    return dz0, du_hat.transpose(1, 0, 2), dsp, dw.transpose(1, 0, 2), GA.sum(axis=2).T
