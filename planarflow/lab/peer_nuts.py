"""The benchmark's second peer: NumPyro's NUTS on the posteriors of lab/posteriors.py, run as a
researcher would — the potential energy written in JAX (jitted, float64), four chains (Stan's and
PyMC's default) of 1000 warm-up and 1000 kept draws from the origin, one chain after another —
and timed from the call to the draws, compilation included. An optional extra (``pip install -e ".[compare]"``); nothing else in planarflow needs it.
"""

import time

import numpy as np


def available():
    """Whether NumPyro (and JAX) can be imported here."""
    try:
        import numpyro  # noqa: F401
    except ImportError:
        return False
    return True


def potential(model):
    """U(z) for one point z in JAX, from a target's ``model`` (kind, data) — the same formula as
    its NumPy energy in lab/posteriors.py."""
    import jax.numpy as jnp

    kind, data = model
    if kind == "eight schools":
        y, sigma = jnp.asarray(data["y"]), jnp.asarray(data["sigma"])

        def U(z):
            mu, log_tau, eta = z[0], z[1], z[2:]
            tau = jnp.exp(log_tau)
            r = (y - mu - tau * eta) / sigma
            return 0.5 * jnp.sum(r * r) + 0.5 * jnp.sum(eta * eta) + 0.5 * (mu / 5.0) ** 2 \
                + jnp.log1p((tau / 5.0) ** 2) - log_tau
    elif kind == "linear":
        X, y = jnp.asarray(data["X"]), jnp.asarray(data["y"])
        n, p = X.shape

        def U(z):
            r = y - X @ z[:p]
            return n * z[p] + 0.5 * jnp.sum(r * r) * jnp.exp(-2.0 * z[p])
    elif kind == "logistic":
        X, y = jnp.asarray(data["X"]), jnp.asarray(data["y"])

        def U(z):
            eta = X @ z
            return jnp.sum(jnp.logaddexp(0.0, eta) - y * eta) + jnp.sum(z * z) / 50.0
    elif kind == "banana":
        scale, bend = data["scale"], data["bend"]

        def U(z):
            r = z[1] - bend * (z[0] ** 2 - scale ** 2)
            return 0.5 * (z[0] / scale) ** 2 + 0.5 * r * r
    else:
        raise ValueError(f"no JAX potential for a model of kind {kind!r}")
    return U


def nuts(target, seed=0, warmup=1000, draws=1000, chains=4):
    """NUTS on ``target``: (seconds from the call to the draws, the draws (chains·draws, d))."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from numpyro.infer import MCMC, NUTS

    start = time.perf_counter()
    kernel = NUTS(potential_fn=potential(target.model))
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="sequential",
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), init_params=jax.numpy.zeros((chains, target.dim)))
    samples = np.asarray(mcmc.get_samples())
    return time.perf_counter() - start, samples
