"""Training: fresh noise every step, the annealed objective, Adam, and a run that never loses work.

Each step t = 0, 1, …, steps − 1:

    β_t  = min(1, 0.01 + t/anneal_steps)        (β = 1 throughout when anneal_steps is 0/None)
    z₀   ~ N(0, I), a fresh batch of batch_size points
    L, ∇L = reverse_kl(θ, z₀, target, β_t)
    θ    ← Adam(θ, ∇L)

Annealing (the paper's §6.1): with β < 1 the target exp(−β·U) is flatter, so the flow can spread
over every mode of a multimodal target before it commits; β then rises to the true objective.
"""

import math

import numpy as np

from .io import load_checkpoint, save_checkpoint
from .objective import _reverse_kl_members
from .optim import Adam
from .progress import Progress
from .validation import as_float, as_int, check_params, check_target, make_rng, PARAM_KEYS
from .flow import init_params
from .fused import Workspace

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class TrainingDiverged(RuntimeError):
    """A training run met a non-finite loss or gradient and stopped.

    Attributes
    ----------
    step : int                 the step at which it happened (0-based)
    history : dict             loss, beta and lr of every completed step
    params : dict              the last finite parameters (those the failing step started from)
    """

    def __init__(self, message, step, history, params):
        super().__init__(message)
        self.step = step
        self.history = history
        self.params = params


def beta_schedule(t, anneal_steps):
    """β_t = min(1, 0.01 + t/anneal_steps); 1 when anneal_steps is 0 or None."""
    if not anneal_steps:
        return 1.0
    return min(1.0, 0.01 + t / anneal_steps)


def lr_schedule(t, steps, lr, lr_final):
    """Cosine decay from lr at t = 0 to lr_final at the last step (constant when lr_final is None)."""
    if lr_final is None or steps <= 1:
        return lr
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * t / (steps - 1)))


def fit(target, K, steps, batch_size, lr=1e-2, anneal_steps=None, rng=None, *, params=None,
        lr_final=None, progress=True, callback=None, checkpoint=None, checkpoint_every=1000,
        resume=None, label=None, population=None, dim=None):
    """Fit a K-layer planar flow to ``target`` by minimising the reverse KL with Adam.

    Parameters
    ----------
    target : object with energy(z) (N,) and grad(z) (N, d); its ``dim`` (default 2) sets d
    K : int ≥ 1, number of layers
    steps : int ≥ 1, number of Adam steps
    batch_size : int ≥ 1, fresh N(0, I) samples per step
    lr : float > 0, Adam's learning rate (the start of the schedule when lr_final is given)
    anneal_steps : int ≥ 0 or None; β_t = min(1, 0.01 + t/anneal_steps), β = 1 when 0 or None
    rng : seed or Generator; the only source of randomness (initial parameters and noise)
    params : optional starting parameters (a copy is trained); default init_params(K, d, rng).
        With a population: u, w (P, K, d), b (P, K), one starting point per member.
    lr_final : optional float > 0; cosine decay of the learning rate from lr to lr_final
    progress : bool, print a line every few seconds to stderr (False: silent)
    callback : optional callable, called after every step as callback(t, loss, beta)
    checkpoint : optional path; every ``checkpoint_every`` steps and at the end the parameters,
        Adam's state, the history and the generator's state are written there atomically
    resume : optional path of such a checkpoint; the run continues from it and ends exactly as
        the uninterrupted run with the same arguments would
    label : optional text for progress lines
    dim : the dimension d; by default the target's ``dim`` attribute, or 2 if it has none
    population : optional int P ≥ 1; train P independent flows at once (each with its own
        initialisation and its own batch of noise) and return them all. Adam updates every
        parameter on its own, so this is exactly P separate runs — but one NumPy call serves all
        P flows, which for small K costs little more than one run (see fused.py). Not combined
        with checkpoint or resume.

    Returns
    -------
    params : dict u (K, d), w (K, d), b (K,); with a population, u, w (P, K, d), b (P, K)
    history : dict of float64 arrays, one entry per step: ``loss`` (steps,) — (steps, P) with
        a population — ``beta`` and ``lr``

    Raises
    ------
    TrainingDiverged
        when a loss or gradient is not finite; it carries the last finite parameters.
    """
    if dim is None:
        dim = as_int(getattr(target, "dim", 2), "target.dim")
    else:
        dim = as_int(dim, "dim")
    check_target(target, dim=dim)
    K = as_int(K, "K")
    steps = as_int(steps, "steps")
    batch_size = as_int(batch_size, "batch_size")
    lr = as_float(lr, "lr", low=0.0, low_open=True)
    if lr_final is not None:
        lr_final = as_float(lr_final, "lr_final", low=0.0, low_open=True)
    if anneal_steps is not None:
        anneal_steps = as_int(anneal_steps, "anneal_steps", minimum=0)
    checkpoint_every = as_int(checkpoint_every, "checkpoint_every")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    if population is not None:
        population = as_int(population, "population")
        if checkpoint is not None or resume is not None:
            raise ValueError("population: cannot be combined with checkpoint or resume")
    label = label or f"{getattr(target, 'name', 'target')} K={K}"
    settings = {"K": K, "dim": dim, "batch_size": batch_size, "lr": lr, "lr_final": lr_final,
                "anneal_steps": anneal_steps, "steps": steps}

    adam = Adam(lr=lr)
    history = {"loss": [], "beta": [], "lr": []}
    if resume is not None:
        params, rng, start = _resume(resume, settings, adam, history)
    else:
        rng = make_rng(rng)
        start = 0
        if population is not None:
            if params is None:
                members = [init_params(K, dim, rng) for _ in range(population)]
            else:
                members = [_check_start(_member(params, i, population), K, dim, f"params member {i}")
                           for i in range(population)]
            params = {k: np.stack([m[k] for m in members]) for k in PARAM_KEYS}   # (P, K, d)
        elif params is None:
            params = init_params(K, dim, rng)
        else:
            params = _check_start(params, K, dim, "params")
    P = population or 1
    # the training step works on a population; a single flow is a population of one, whose
    # arrays are views of params (so Adam's in-place updates reach params)
    members = params if population else {k: params[k][None] for k in PARAM_KEYS}
    adam.m = {k: m[None] for k, m in adam.m.items()} if not population else adam.m
    adam.v = {k: v[None] for k, v in adam.v.items()} if not population else adam.v

    report = Progress(enabled=progress)
    ws = Workspace()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for t in range(start, steps):
            beta = beta_schedule(t, anneal_steps)
            adam.lr = lr_schedule(t, steps, lr, lr_final)
            z0 = rng.standard_normal((P, batch_size, dim))
            losses, grads = _reverse_kl_members(members, z0, target, beta, ws)
            # One check of everything: a NaN or ±inf anywhere makes the sum non-finite. The
            # parameters are still the finite ones this step started from; and with a finite
            # gradient an Adam step cannot make them non-finite (|Δθ| ≤ lr·(1 − β₁)/√(1 − β₂)).
            if not math.isfinite(float(losses.sum() + grads["u"].sum() + grads["w"].sum() + grads["b"].sum())):
                _diverged(t, "the loss or its gradient is not finite", history, params, lr, anneal_steps)
            adam._step(members, grads)
            loss = losses if population else float(losses[0])
            history["loss"].append(loss)
            history["beta"].append(beta)
            history["lr"].append(adam.lr)
            if checkpoint is not None and ((t + 1) % checkpoint_every == 0 or t + 1 == steps):
                save_checkpoint(checkpoint, params, {k: m[0] for k, m in adam.m.items()},
                                {k: v[0] for k, v in adam.v.items()}, adam.t, history, rng,
                                dict(settings, step=t + 1))
            if callback is not None:
                callback(t, loss, beta)
            if report.due():
                report.update(f"{label}: step {t + 1}/{steps}  loss {np.min(loss):+.4f}  β {beta:.2f}  "
                              f"({report.elapsed():.0f} s)")
    report.close()
    return params, {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}


def _check_start(params, K, dim, name):
    """A checked copy of starting parameters for K layers in dim dimensions."""
    params, pK, pd = check_params(params, name)
    if (pK, pd) != (K, dim):
        raise ValueError(f"{name}: expected K = {K} layers in {dim} dimensions, got K = {pK}, d = {pd}")
    return {k: params[k].copy() for k in PARAM_KEYS}


def _member(params, i, population):
    """Member i of population parameters u, w (P, K, d), b (P, K), as one flow's dict."""
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict with keys {list(PARAM_KEYS)}, got {type(params).__name__}")
    if set(params) != set(PARAM_KEYS):
        raise ValueError(f"params: expected exactly the keys {list(PARAM_KEYS)}, got {sorted(map(str, params))}")
    member = {}
    for k in PARAM_KEYS:
        shape = np.shape(params[k])
        if len(shape) != (2 if k == "b" else 3) or shape[0] != population:
            raise ValueError(f"params[{k!r}]: with population = {population}, expected an array with a "
                             f"leading axis of {population} members, got shape {shape}")
        member[k] = np.asarray(params[k])[i]          # checked as one flow's parameters by the caller
    return member


def _diverged(t, what, history, params, lr, anneal_steps):
    raise TrainingDiverged(
        f"training diverged at step {t}: {what}. The last finite parameters are in this "
        f"exception's .params and the history so far in .history. Try a smaller learning rate "
        f"(lr = {lr:g} now) or longer annealing (anneal_steps = {anneal_steps} now).",
        step=t,
        history={k: np.asarray(v, dtype=np.float64) for k, v in history.items()},
        params={k: v.copy() for k, v in params.items()},
    )


def _resume(path, settings, adam, history):
    """Restore parameters, Adam, history and the generator from a checkpoint; returns the start step."""
    params, m, v, saved_history, meta = load_checkpoint(path)
    for key in ("K", "dim", "batch_size", "lr", "lr_final", "anneal_steps", "steps"):
        if meta.get(key) != settings[key]:
            raise ValueError(
                f"resume: the checkpoint {path!r} was written by a run with {key} = {meta.get(key)!r}, "
                f"this call has {key} = {settings[key]!r}; resume with the same settings"
            )
    start = meta.get("step")
    if not isinstance(start, int) or not 0 <= start <= settings["steps"] or start != len(saved_history["loss"]):
        raise ValueError(f"resume: the checkpoint {path!r} records an inconsistent step count")
    state = meta.get("rng_state")
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        raise ValueError(f"resume: the checkpoint {path!r} holds no usable generator state")
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"resume: the checkpoint {path!r} holds a corrupt generator state ({exc})") from None
    adam.m, adam.v = m, v
    adam.t = as_int(meta.get("adam_t"), "adam_t", minimum=0)
    history.update(saved_history)
    return params, rng, start
