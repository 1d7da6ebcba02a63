"""The exercises of docs/exercises.md, run end to end: what a student should observe, measured.

    python -m planarflow exercises        # prints what it observed, and how long it took

1. a gradient checked by hand with central differences — then broken on purpose;
2. training with and without the û constraint (û = u, with its own correct gradient);
3. U1 without annealing, from the PyTorch implementation's start u, w, b ~ Uniform(0, 1);
4. U2 without the box wall, where Z is infinite.

Exercises 1 and 2 change reference.py's functions the way a student editing the file would
(``edited`` swaps a function of planarflow.reference for the duration of a block), and show
that planarflow's reverse_kl and fit — which call those functions — change with them.
Each function returns what it measured; ``main`` prints it, and tests/test_exercises.py checks
the page's "observe" ranges against the same functions.
"""

import contextlib
import time

import numpy as np

from .. import reference
from ..library.api import get_target, init_params, kl_divergence, log_partition, numerical_gradient, rel_error, reverse_kl, sample
from .recipes import uniform_start
from ..library.progress import say
from ..library.training import TrainingDiverged, fit


@contextlib.contextmanager
def edited(**functions):
    """Within the block, planarflow.reference.<name> is the given function, as if edited in the file."""
    saved = {name: getattr(reference, name) for name in functions}
    for name, fn in functions.items():
        setattr(reference, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(reference, name, fn)


# --- 1. check a gradient, then break it ---------------------------------------------------------

def gradient_check():
    """rel_error of ∂L/∂b from reverse_kl against central differences (3 layers, U3, 64 points)."""
    target = get_target("U3")
    params = init_params(3, rng=0, u_scale=0.5)
    z0 = np.random.default_rng(1).standard_normal((64, 2))
    analytic = reverse_kl(params, z0, target)[1]["b"]
    numeric = numerical_gradient(lambda b: reverse_kl(dict(params, b=b), z0, target)[0], params["b"].copy())
    return rel_error(analytic, numeric)


def flipped_logdet_sign():
    """reference.planar_backward with the log-det's part negated: the edit `dlogdet = -dlogdet`
    as the first line of its body."""
    original = reference.planar_backward

    def planar_backward(dy, dlogdet, cache):
        return original(dy, -dlogdet, cache)

    return planar_backward


# --- 2. drop the û constraint ---------------------------------------------------------------

def u_hat_forward_free(u, w):
    """The layer without appendix A.1: û = u, and sp = 1 + wᵀû = 1 + wᵀu (which may be ≤ 0)."""
    return u, 1.0 + (w * u).sum(axis=-1), (u, w)


def u_hat_backward_free(du_hat, dsp, cache):
    """Its backward: ∂L/∂u = gû + gsp·w, ∂L/∂w = gsp·u (from sp = 1 + wᵀu)."""
    u, w = cache
    dsp = np.expand_dims(dsp, -1)
    return du_hat + dsp * w, dsp * u


def without_constraint():
    """``with without_constraint():`` reference.py's û is u itself, forward and backward."""
    return edited(u_hat_forward=u_hat_forward_free, u_hat_backward=u_hat_backward_free)


def train(constrained=True, seeds=range(10), steps=2000, lr=0.1, K=8, batch_size=512):
    """U1 fitted at a large learning rate, one run per seed, with reference.py's û as it stands
    (constrained) or without the constraint. For each run: ("diverged", step) when a log-det met
    a non-positive 1 + h'·wᵀû (TrainingDiverged), else ("finished", the smallest wᵀû) of its last
    parameters — keep_best=False: the exercise is about where each run ends, so fit does not hand
    back an earlier step's parameters when the loss rose at the end (at lr 0.1 several do)."""
    outcomes = []
    with contextlib.nullcontext() if constrained else without_constraint():
        for seed in seeds:
            try:
                params, _ = fit(get_target("U1"), K, steps, batch_size, lr=lr, rng=seed, progress=False,
                                keep_best=False)
                u_hat = reference.u_hat_forward(params["u"], params["w"])[0]
                outcomes.append(("finished", float(np.min(np.sum(params["w"] * u_hat, axis=1)))))
            except TrainingDiverged as exc:
                outcomes.append(("diverged", exc.step))
    return outcomes


# --- 3. annealing -------------------------------------------------------------------------------

def annealing(anneal_steps, seeds=range(10), steps=2000, K=8, batch_size=512):
    """Exact KL of U1 fits from the uniform start, one per seed (fused engine: same numbers, faster)."""
    target = get_target("U1")
    kls = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        params, _ = fit(target, K, steps, batch_size, lr=1e-2, lr_final=3e-4, anneal_steps=anneal_steps,
                        rng=rng, params=uniform_start(K, rng), progress=False, engine="fused")
        kls.append(kl_divergence(params, target, 50_000, rng=1)[0])
    return kls


LOBE_LOST = 0.5          # KL above this: one of U1's two lobes is missing (that costs ≈ log 2)


# --- 4. the box wall ----------------------------------------------------------------------------

def without_wall(marks=(1000, 3000, 6000), K=16, batch_size=512):
    """U2 with box=None: the mean loss over the 200 steps before each mark, the boxed target's
    floor −log Z, and the 1st and 99th percentiles of z₁ of 20 000 samples at the end."""
    params, history = fit(get_target("U2", box=None), K, marks[-1], batch_size, lr=1e-2, rng=0,
                          progress=False, engine="fused")
    z, _ = sample(params, 20_000, rng=1)
    losses = [float(history["loss"][m - 200:m].mean()) for m in marks]
    return losses, -log_partition(get_target("U2")), tuple(np.percentile(z[:, 0], [1, 99]))


def main(argv=None):
    import argparse

    argparse.ArgumentParser(prog="python -m planarflow exercises",
                            description="Run the exercises for a course (docs/exercises.md) and print what this machine "
                                        "observes; tests/test_exercises.py checks the page's "
                                        "ranges against the same functions.").parse_args(argv)
    began = time.perf_counter()
    say("1. ∂L/∂b of reverse_kl against central differences:")
    say(f"   rel_error = {gradient_check():.1e}")
    with edited(planar_backward=flipped_logdet_sign()):
        say(f"   with the log-det's sign flipped in reference.planar_backward: rel_error = {gradient_check():.1e}")

    say("2. U1, K = 8, lr = 0.1, ten seeds, with and without the û constraint:")
    for constrained in (True, False):
        outcomes = train(constrained)
        diverged = [value for what, value in outcomes if what == "diverged"]
        finished = [value for what, value in outcomes if what == "finished"]
        say(f"   {'with' if constrained else 'without':>7}: {len(diverged)} of {len(outcomes)} stopped with "
              f"TrainingDiverged" + (f" (at steps {min(diverged)}–{max(diverged)})" if diverged else "")
              + (f"; the {len(finished)} finished have smallest wᵀû from {min(finished):.2f} to "
                 f"{max(finished):.2f}" if finished else ""))

    say("3. U1, K = 8, 2000 steps from the start u, w, b ~ U(0, 1), ten seeds:")
    for anneal in (0, 700):
        kls = annealing(anneal)
        lost = sum(k > LOBE_LOST for k in kls)
        say(f"   anneal_steps = {anneal:4d}: KL " + " ".join(f"{k:.2f}" for k in kls)
              + f"  — {lost} of 10 near log 2 = 0.69 (a lobe lost)")

    say("4. U2 without the box wall (box=None), K = 16:")
    losses, floor, (lo, hi) = without_wall()
    marks = ", ".join(f"{loss:+.3f} at step {m}" for loss, m in zip(losses, (1000, 3000, 6000)))
    say(f"   loss {marks}; the boxed target's floor is −log Z = {floor:.3f}")
    say(f"   98% of the samples have z₁ in [{lo:.1f}, {hi:.1f}]: the flow stretches beyond (−4, 4)")
    say(f"All four in {time.perf_counter() - began:.0f} s.")

