"""Adam (Kingma & Ba 2015), written out.

    t ← t + 1
    m ← β₁·m + (1 − β₁)·g            first moment: a running mean of the gradient
    v ← β₂·v + (1 − β₂)·g²           second moment: a running mean of its square
    m̂ = m/(1 − β₁ᵗ),  v̂ = v/(1 − β₂ᵗ)   bias correction (m and v start at 0)
    θ ← θ − lr·m̂/(√v̂ + ε)
"""

import numpy as np

from .validation import as_array, as_float


class Adam:
    """Adam over a dict of arrays, updated in place by ``step(params, grads)``.

    ``lr`` may be changed between steps (a schedule sets it); ``state()``/``load_state()`` give
    the moments and step count for checkpoints.
    """

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = as_float(lr, "lr", low=0.0, low_open=True)
        self.beta1 = as_float(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        self.beta2 = as_float(beta2, "beta2", low=0.0, high=1.0, high_open=True)
        self.eps = as_float(eps, "eps", low=0.0, low_open=True)
        self.t = 0
        self.m = {}
        self.v = {}

    def step(self, params, grads):
        """One Adam update of every array in ``params`` (in place) from ``grads`` (same keys).

        ``params`` must hold float64 arrays (they are updated in place); ``grads`` arrays of the
        same shapes, finite.
        """
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError("params, grads: expected dicts of arrays")
        if set(grads) != set(params):
            raise ValueError(f"grads: expected the keys of params {sorted(params)}, got {sorted(grads)}")
        for key, theta in params.items():
            if not isinstance(theta, np.ndarray) or theta.dtype != np.float64:
                raise TypeError(f"params[{key!r}]: expected a float64 ndarray (updated in place), "
                                f"got {type(theta).__name__}")
            g = as_array(grads[key], f"grads[{key!r}]", shape=theta.shape)
            grads = dict(grads, **{key: g})
        self._step(params, grads)

    def _step(self, params, grads):
        """step without the argument checks (the training loop checks once, before it starts)."""
        self.t += 1
        bias1 = 1.0 - self.beta1 ** self.t              # bias corrections
        bias2 = 1.0 - self.beta2 ** self.t
        for key, theta in params.items():
            g = grads[key]
            if key not in self.m:
                self.m[key] = np.zeros_like(theta)
                self.v[key] = np.zeros_like(theta)
            m, v = self.m[key], self.v[key]
            m *= self.beta1
            m += (1.0 - self.beta1) * g                 # m ← β₁m + (1 − β₁)g
            v *= self.beta2
            v += (1.0 - self.beta2) * (g * g)           # v ← β₂v + (1 − β₂)g²
            theta -= self.lr * (m / bias1) / (np.sqrt(v / bias2) + self.eps)
