"""The README's exercises, run end to end: what a student should observe, measured.

    python -m planarflow.exercises        # about a minute

1. a gradient checked by hand with central differences;
2. training without the û constraint (û = u);
3. U1 without annealing, from the seed's start u, w, b ~ Uniform(0, 1), counting lost lobes;
4. U2 without the box wall, where Z is infinite.
"""

import contextlib

import numpy as np

from . import objective
from .diagnostics import kl_divergence, log_partition
from .flow import init_params, sample
from .gradcheck import numerical_gradient, rel_error
from .targets import get_target
from .train import TrainingDiverged, fit


def gradient_check():
    """Exercise 1: ∂L/∂b from reverse_kl against central differences."""
    target = get_target("U3")
    params = init_params(3, rng=0, u_scale=0.5)
    z0 = np.random.default_rng(1).standard_normal((64, 2))
    analytic = objective.reverse_kl(params, z0, target)[1]["b"]
    numeric = numerical_gradient(lambda x: objective.reverse_kl(dict(params, b=x), z0, target)[0],
                                 params["b"].copy())
    return rel_error(analytic, numeric)


@contextlib.contextmanager
def without_constraint():
    """Within this block the training step uses û = u (and 1 + wᵀû = 1 + wᵀu): no appendix A.1."""
    constrained = objective.u_hat_forward

    def unconstrained(u, w):
        _, _, cache = constrained(u, w)
        return u, 1.0 + np.sum(w * u, axis=-1), cache

    objective.u_hat_forward = unconstrained
    try:
        yield
    finally:
        objective.u_hat_forward = constrained


def seed_start(K, rng):
    """The seed's initialisation: u, w, b ~ Uniform(0, 1)."""
    return {"u": rng.uniform(0, 1, (K, 2)), "w": rng.uniform(0, 1, (K, 2)), "b": rng.uniform(0, 1, K)}


def main():
    print(f"1. gradient check, ∂L/∂b of reverse_kl against central differences: "
          f"rel_error = {gradient_check():.1e}")

    print("2. U1, K = 8, lr = 0.05, without the û constraint:")
    with without_constraint():
        for seed in range(3):
            try:
                params, _ = fit(get_target("U1"), 8, 2000, 512, lr=0.05, rng=seed, progress=False)
                wtu = np.sum(params["w"] * params["u"], axis=1)
                print(f"   seed {seed}: finished; smallest wᵀû = {wtu.min():.2f}"
                      f"{' (< −1: not invertible)' if wtu.min() < -1 else ''}")
            except TrainingDiverged as exc:
                print(f"   seed {seed}: TrainingDiverged at step {exc.step} (the log-det is not finite)")

    print("3. U1, K = 8, 2000 steps from the seed's start u, w, b ~ U(0, 1), ten seeds:")
    target = get_target("U1")
    for anneal in (0, 700):
        kls = []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            params, _ = fit(target, 8, 2000, 512, lr=1e-2, lr_final=3e-4, anneal_steps=anneal,
                            rng=rng, params=seed_start(8, rng), progress=False)
            kls.append(kl_divergence(params, target, 50_000, rng=1)[0])
        lost = sum(k > 0.5 for k in kls)
        print(f"   anneal_steps = {anneal:4d}: KL " + " ".join(f"{k:.2f}" for k in kls)
              + f"  — {lost} of 10 near log 2 = 0.69 (a lobe lost)")

    print("4. U2 without the box wall (box=None), K = 16:")
    target = get_target("U2", box=None)
    marks = (1000, 3000, 6000)
    params, history = fit(target, 16, marks[-1], 512, lr=1e-2, rng=0, progress=False)
    z, _ = sample(params, 20_000, rng=1)
    losses = ", ".join(f"{history['loss'][m - 200:m].mean():+.3f} at step {m}" for m in marks)
    lo, hi = np.percentile(z[:, 0], [1, 99])
    floor = -log_partition(get_target("U2"))
    print(f"   loss {losses}; the boxed target's floor is −log Z = {floor:.3f}")
    print(f"   98% of the samples have z₁ in [{lo:.1f}, {hi:.1f}]: the flow stretches beyond (−4, 4)")


if __name__ == "__main__":
    main()
