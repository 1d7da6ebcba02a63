"""fit: reference.fit's training loop, with what a long or unattended run needs around it.

reference.fit is the loop to read. This one takes the same steps — with the default
``engine="reference"`` it returns exactly what reference.fit returns (tests/test_engines.py) —
and adds argument checks, the fast engine, populations, divergence detection, checkpoints and
progress lines. Every step, as in reference.fit:

    β_t  = reference.beta_schedule(t, anneal_steps),   lr_t = reference.lr_schedule(t, …)
    z₀   ~ N(0, I), a fresh batch
    L, ∇L = reference.reverse_kl(θ, z₀, target, β_t)   (engine="fused": fused.reverse_kl_members)
    θ    ← reference.Adam(θ, ∇L)

Every reference function is looked up when it is called, so an edit of planarflow/reference.py
(or a monkeypatch of it) changes what fit computes.
"""

import math

import numpy as np

from .. import fused, reference
from .io import check_output_path, load_checkpoint, save_checkpoint
from .progress import Progress
from .validation import (MAX_ENTRIES, PARAM_KEYS, CheckedTarget, as_float, as_int, check_params,
                         check_size, make_rng, param_domain_violation)

ENGINES = ("reference", "fused")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
MAX_STEPS = 10 ** 7


class TrainingDiverged(RuntimeError):
    """A training run met a non-finite loss or gradient, or left the parameters' domain, and stopped.

    Attributes
    ----------
    step : int                 the step at which it happened (0-based)
    history : dict             loss, beta and lr of every completed step
    params : dict              the last valid parameters (those the failing step started from)
    """

    def __init__(self, message, step, history, params):
        super().__init__(message)
        self.step = step
        self.history = history
        self.params = params

    def __reduce__(self):            # so that it crosses process boundaries with its attributes
        return type(self), (str(self), self.step, self.history, self.params)


def fit(target, K, steps, batch_size, lr=1e-2, anneal_steps=None, rng=None, *, params=None,
        lr_final=None, progress=True, callback=None, checkpoint=None, checkpoint_every=1000,
        resume=None, label=None, population=None, dim=None, engine="reference"):
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
        Adam's state, the history, the generator's state and the settings (target included) are
        written there atomically. The path is checked before the first step.
    resume : optional path of such a checkpoint; the run continues from it and ends exactly as
        the uninterrupted run with the same arguments would (``params`` and ``rng`` must be None)
    label : optional text for progress lines
    population : optional int P ≥ 1; train P independent flows at once (each with its own
        initialisation and its own batch of noise) and return them all. Adam updates every
        parameter on its own, so this is exactly P separate runs; with engine="fused" one NumPy
        call serves all P flows, which for small K costs little more than one run.
        Not combined with checkpoint or resume.
    dim : the dimension d; by default the target's ``dim`` attribute, or 2 if it has none
    engine : "reference" (default): every step runs planarflow/reference.py's functions, the
        code a student reads and edits; "fused": planarflow/fused.py, the same numbers to
        rounding, several times faster.

    Returns
    -------
    params : dict u (K, d), w (K, d), b (K,); with a population, u, w (P, K, d), b (P, K)
    history : dict of float64 arrays, one entry per step: ``loss`` (steps,) — (steps, P) with
        a population — ``beta`` and ``lr``

    Raises
    ------
    TrainingDiverged
        when a loss or gradient is not finite, or a step leaves the parameters' domain (see
        planarflow/tools/validation.py); it carries the last valid parameters.
    """
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
    if dim is None:
        dim = getattr(target, "dim", 2)
        name = "target.dim"
    else:
        name = "dim"
    dim = as_int(dim, name, maximum=MAX_ENTRIES)
    checked = CheckedTarget(target, dim, finite=False)
    K = as_int(K, "K", maximum=MAX_ENTRIES)
    steps = as_int(steps, "steps", maximum=MAX_STEPS)
    batch_size = as_int(batch_size, "batch_size", maximum=MAX_ENTRIES)
    lr = as_float(lr, "lr", low=0.0, low_open=True)
    if lr_final is not None:
        lr_final = as_float(lr_final, "lr_final", low=0.0, low_open=True)
    if anneal_steps is not None:
        anneal_steps = as_int(anneal_steps, "anneal_steps", minimum=0, maximum=MAX_STEPS)
    checkpoint_every = as_int(checkpoint_every, "checkpoint_every", maximum=MAX_STEPS)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress: expected True or False, got {progress!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label: expected a string or None, got {type(label).__name__}")
    if population is not None:
        population = as_int(population, "population", maximum=MAX_ENTRIES)
        if checkpoint is not None or resume is not None:
            raise ValueError("population: cannot be combined with checkpoint or resume")
    P = population or 1
    check_size("batch_size", K + 1, P, batch_size, dim + 2, 2)       # the engine's buffers
    if resume is not None and (params is not None or rng is not None):
        raise ValueError(f"{'params' if params is not None else 'rng'}: a resumed run continues the "
                         f"checkpoint's parameters and generator; pass neither params nor rng with resume")
    if checkpoint is not None:
        checkpoint = check_output_path(checkpoint, "checkpoint")
    label = label or f"{getattr(target, 'name', 'target')} K={K}"
    settings = {"K": K, "dim": dim, "batch_size": batch_size, "lr": lr, "lr_final": lr_final,
                "anneal_steps": anneal_steps, "steps": steps, "engine": engine,
                "target": target_identity(target)}

    adam = reference.Adam(lr)
    history = {"loss": [], "beta": [], "lr": []}
    if resume is not None:
        params, rng, start = _resume(resume, settings, adam, history)
    else:
        rng = make_rng(rng)
        start = 0
        if population is not None:
            if params is None:
                members = [_init(K, dim, rng) for _ in range(population)]
            else:
                members = [_check_start(_member(params, i, population), K, dim, f"params member {i}")
                           for i in range(population)]
            params = {k: np.stack([m[k] for m in members]) for k in PARAM_KEYS}   # (P, K, d)
        elif params is None:
            params = _init(K, dim, rng)
        else:
            params = _check_start(params, K, dim, "params")
    # the loop works on a population; a single flow is a population of one, whose arrays are
    # views of params (so Adam's in-place updates reach params)
    members = params if population else {k: params[k][None] for k in PARAM_KEYS}
    if not population:
        adam.m = {k: m[None] for k, m in adam.m.items()}
        adam.v = {k: v[None] for k, v in adam.v.items()}
    last = {k: np.empty_like(v) for k, v in members.items()}          # the last valid parameters
    step = _reference_step if engine == "reference" else _fused_step(fused.Workspace())

    report = Progress(enabled=progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for t in range(start, steps):
            beta = reference.beta_schedule(t, anneal_steps)
            adam.lr = reference.lr_schedule(t, steps, lr, lr_final)
            z0 = rng.standard_normal((P, batch_size, dim))
            losses, grads = step(members, z0, checked, beta)
            # One check of everything: a NaN or ±inf anywhere makes the sum non-finite.
            if not math.isfinite(float(losses.sum() + grads["u"].sum() + grads["w"].sum() + grads["b"].sum())):
                _diverged(t, "the loss or its gradient is not finite", history, params, lr, anneal_steps)
            for k in PARAM_KEYS:
                np.copyto(last[k], members[k])
            adam.step(members, grads)
            outside = param_domain_violation(members["u"], members["w"], members["b"])
            if outside is not None:
                for k in PARAM_KEYS:
                    np.copyto(members[k], last[k])
                _diverged(t, f"the step left the parameters' domain: {outside}", history, params, lr,
                          anneal_steps)
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


def _init(K, dim, rng):
    """reference.init_params, looked up now (so that an edit of it shows)."""
    return reference.init_params(K, dim, rng)


def _reference_step(members, z0, target, beta):
    """The loss and gradient of each member through reference.reverse_kl, one member at a time."""
    results = [reference.reverse_kl({k: v[p] for k, v in members.items()}, z0[p], target, beta)
               for p in range(z0.shape[0])]
    losses = np.array([loss for loss, _ in results])
    return losses, {k: np.stack([g[k] for _, g in results]) for k in PARAM_KEYS}


def _fused_step(ws):
    """The same through fused.reverse_kl_members, all members at once, in a kept Workspace."""
    def step(members, z0, target, beta):
        return fused.reverse_kl_members(members, z0, target, beta, ws)
    return step


def target_identity(target):
    """A text that tells targets apart, recorded in checkpoints: the repr of planarflow's own
    targets (name, box, wall or mean, std), the class and dimension of anyone else's."""
    own = getattr(target, "identity", None)
    if isinstance(own, str):
        return own
    cls = type(target)
    return f"{cls.__module__}.{cls.__qualname__} (dim {getattr(target, 'dim', None)!r})"


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
        f"training diverged at step {t}: {what}. The last valid parameters are in this "
        f"exception's .params and the history so far in .history. Try a smaller learning rate "
        f"(lr = {lr:g} now) or longer annealing (anneal_steps = {anneal_steps} now).",
        step=t,
        history={k: np.asarray(v, dtype=np.float64) for k, v in history.items()},
        params={k: v.copy() for k, v in params.items()},
    )


def _resume(path, settings, adam, history):
    """Restore parameters, Adam, history and the generator from a checkpoint; returns the start step."""
    params, m, v, saved_history, meta = load_checkpoint(path)
    for key in ("K", "dim", "batch_size", "lr", "lr_final", "anneal_steps", "steps", "engine", "target"):
        if meta.get(key) != settings[key]:
            raise ValueError(
                f"resume: the checkpoint {path!r} was written by a run with {key} = {meta.get(key)!r}, "
                f"this call has {key} = {settings[key]!r}; resume with the same settings")
    start = meta.get("step")
    if not isinstance(start, int) or not 0 <= start <= settings["steps"] or start != len(saved_history["loss"]):
        raise ValueError(f"resume: the checkpoint {path!r} records an inconsistent step count")
    state = meta.get("rng_state")
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        raise ValueError(f"resume: the checkpoint {path!r} holds no usable generator state")
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"resume: the checkpoint {path!r} holds a corrupt generator state ({exc})") from None
    adam.m, adam.v = m, v
    adam_t = meta.get("adam_t")
    if not isinstance(adam_t, int) or not 0 <= adam_t <= MAX_STEPS:
        raise ValueError(f"resume: the checkpoint {path!r} records an invalid Adam step count")
    adam.t = adam_t
    history.update(saved_history)
    return params, rng, start
