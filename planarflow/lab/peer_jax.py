"""The peer the benchmark measures the fused engine against: a jitted JAX training step.

This is not planarflow's math (that lives in reference.py and fused.py only): it is how a JAX
user would write the same training step — K planar layers with the û constraint, the loss
E[log q₀(z₀) − Σ log D_k + U₄(z_K)] with U₄ in its box wall, jax.value_and_grad for the
gradient, Adam at lr 1e-2 — compiled once with jax.jit, in float64 on one thread. It needs JAX
(``pip install -e .[compare]``), which nothing else in planarflow uses; without it
``available()`` is False and the benchmark says so.
"""

import os
import time


def _jax():
    """JAX, imported on one CPU thread (the flags count only before its first import)."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def available():
    try:
        _jax()
    except Exception:
        return False
    return True


def make_loss(K):
    """The loss of K planar layers on U₄ in its box wall, as a JAX function of ((u, w, b), z₀)."""
    jax = _jax()
    jnp = jax.numpy

    def energy(z):                          # U₄ and the box wall (planarflow.targets)
        z1, z2 = z[:, 0], z[:, 1]
        w1 = jnp.sin(0.5 * jnp.pi * z1)
        w3 = 3.0 / (1.0 + jnp.exp(-(z1 - 1.0) / 0.3))
        U = -jnp.logaddexp(-0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + w3) / 0.35) ** 2)
        excess = jnp.maximum(jnp.abs(z) - 4.0, 0.0)
        return U + 0.5 * jnp.sum((excess / 0.2) ** 2, axis=1)

    def loss(params, z0):
        u, w, b = params
        wtu = jnp.sum(w * u, axis=1)
        u_hat = u + ((jax.nn.softplus(wtu) - 1.0 - wtu) / jnp.sum(w * w, axis=1))[:, None] * w
        s = jnp.sum(w * u_hat, axis=1)
        z, sum_logdet = z0, 0.0
        for k in range(K):
            t = jnp.tanh(z @ w[k] + b[k])
            z = z + t[:, None] * u_hat[k]
            sum_logdet = sum_logdet + jnp.log(1.0 + (1.0 - t * t) * s[k])
        log_q0 = -0.5 * jnp.sum(z0 ** 2, axis=1) - 0.5 * z0.shape[1] * jnp.log(2 * jnp.pi)
        return jnp.mean(log_q0 - sum_logdet + energy(z))

    return loss


def make_timer(K, batch_size, seed=0):
    """The jitted JAX step, compiled once; returns times(steps, warmup) -> per-step wall times
    (seconds) of a run from the same start each call, after ``warmup`` untimed steps."""
    import numpy as np

    jax = _jax()
    jnp = jax.numpy
    d = 2
    loss = make_loss(K)

    @jax.jit
    def step(params, m, v, t, key):
        key, sub = jax.random.split(key)
        z0 = jax.random.normal(sub, (batch_size, d), dtype=jnp.float64)
        value, g = jax.value_and_grad(loss)(params, z0)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m_, g_: 0.9 * m_ + 0.1 * g_, m, g)
        v = jax.tree_util.tree_map(lambda v_, g_: 0.999 * v_ + 0.001 * g_ * g_, v, g)
        params = jax.tree_util.tree_map(
            lambda p, m_, v_: p - 1e-2 * (m_ / (1 - 0.9 ** t)) / (jnp.sqrt(v_ / (1 - 0.999 ** t)) + 1e-8),
            params, m, v)
        return params, m, v, t, key, value

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((K, d))
    start = (jnp.asarray(0.1 * rng.standard_normal((K, d))), jnp.asarray(w), jnp.asarray(0.1 * rng.standard_normal(K)))

    def times(steps, warmup=10):
        params = start
        m = jax.tree_util.tree_map(jnp.zeros_like, params)
        v = jax.tree_util.tree_map(jnp.zeros_like, params)
        t, key = 0, jax.random.PRNGKey(seed)
        stamps = []
        for _ in range(steps + warmup):
            params, m, v, t, key, value = step(params, m, v, t, key)
            value.block_until_ready()
            stamps.append(time.perf_counter())
        return np.diff(stamps)[warmup - 1:]

    times(1)                                 # compile
    return times


def agreement(K=32, batch_size=1024, seed=0):
    """|the peer's loss − reference.reverse_kl's| at random parameters and noise: the same flow."""
    import numpy as np

    from .. import reference
    from ..library.api import get_target

    jnp = _jax().numpy
    rng = np.random.default_rng(seed)
    params = reference.init_params(K, 2, rng, u_scale=0.5)
    z0 = rng.standard_normal((batch_size, 2))
    ours = reference.reverse_kl(params, z0, get_target("U4"), 1.0)[0]
    theirs = float(make_loss(K)(tuple(jnp.asarray(params[k]) for k in "uwb"), jnp.asarray(z0)))
    return abs(ours - theirs)

