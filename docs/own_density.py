"""The README's "your own density": a Poisson regression's posterior, from its energy and gradient.

    python docs/own_density.py
"""
import numpy as np

import planarflow as pf

rng = np.random.default_rng(0)                       # data: counts y with log-rate a + b·x
x = rng.uniform(0.0, 2.0, 50)
y = rng.poisson(np.exp(0.5 + 1.2 * x))


def energy_and_grad(z):
    """U(a, b) = −log p(a, b | y) + const for points z = (a, b) of shape (N, 2), flat priors."""
    rate = np.exp(z[:, :1] + z[:, 1:] * x)             # (N, 50)
    U = (rate - y * np.log(rate)).sum(axis=1)
    r = rate - y
    return U, np.column_stack([r.sum(axis=1), (r * x).sum(axis=1)])


target = pf.Target(2, energy_and_grad=energy_and_grad, name="poisson regression")
print(pf.check_target(target, rng=0))                 # the hand gradient against differences
params, history = pf.fit(target, 16, 3000, 512, rng=1, progress=False)   # stops once converged
post = pf.posterior(params, target, 20_000, rng=2, names=["a", "b"])
print(post)                                           # PSIS-weighted; warns if k̂ > 0.7
