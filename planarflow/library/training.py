"""fit: reference.fit's training loop, with what a researcher's or an unattended run needs around it.

``planarflow.fit`` runs reference.fit — the loop a student reads and edits — through its hooks
(params, objective, adam, start, shape), and adds around it:

- argument checks, before any work;
- the start: for a user's target, the mode and the Laplace approximation there (library/mode.py),
  in whose frame the flow is trained and into whose base the frame is folded at the end;
- the fast engine (``engine="fused"``: fused.reverse_kl_members instead of reference.reverse_kl);
- populations of P flows trained at once (the noise of each step has shape (P, N, d));
- divergence: a non-finite loss or gradient, or a step out of the parameters' domain, stops the
  run with TrainingDiverged before it corrupts anything;
- the best parameters seen, by a smoothed loss, so that a run that blows up late cannot silently
  return worse parameters than it had;
- checkpoints, resumption, progress lines.

Every reference function is looked up when it is called, so an edit of planarflow/reference.py
(or a monkeypatch of it) changes what fit computes.
"""

import math
import warnings

import numpy as np

from .. import base, fused, path_gradient, reference
from .files import check_output_path, load_checkpoint, save_checkpoint
from .mode import Frame, Mode, ModeNotFound, check_mode, check_search_size, find_mode
from . import threads
from .progress import Progress
from .validation import (BASE_KEYS, MAX_ENTRIES, PARAM_KEYS, CheckedTarget, as_array, as_float, as_int,
                         check_params, check_size, has_gradient, make_rng, param_domain_violation, param_keys,
                         target_dim)

ENGINES = ("auto", "reference", "fused")
GRADIENTS = ("full", "path")
STARTS = ("auto", "mode", "standard")
STOPS = ("auto", "converged", "steps")
DIFFERENCES = ("auto", "coordinates", "directions")
DIRECTIONS = 2               # random directions a point for an energy without a gradient (differences.py;
DIRECTIONS_FROM = 16         # fit's choice from this dimension on. Measured (benchmark --energy-only): from
                             # d = 10 directions are 2.5–6× faster, but noisier where the posterior is far
                             # from Gaussian (the eight schools' sds 0.03–0.08 off, against 0.02); from
                             # d ≈ 16 the coordinates' d + 1 energies a point dominate every step)
ANNEAL_FROM_MODE = 200       # β's climb to 1 when the flow starts at the Laplace approximation (measured:
                             # python -m planarflow benchmark --stopping)
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
MAX_STEPS = 10 ** 7


class TrainingDiverged(RuntimeError):
    """A training run met a non-finite loss or gradient, or left the parameters' domain, and stopped.

    Attributes
    ----------
    step : int                 the step at which it happened (0-based)
    history : dict             loss, beta and lr of every completed step
    params : dict              the best parameters seen by the smoothed loss at β = 1 (fit's rule
                               for what it returns), or the last valid ones when no such loss exists yet
    last_params : dict         the last valid parameters: the last at which the loss and its gradient
                               were finite — those the step before the failing one started from when
                               the failing step's loss or gradient was not finite, those the failing
                               step started from when its update left the parameters' domain
    """

    def __init__(self, message, step, history, params, last_params=None):
        super().__init__(message)
        self.step = step
        self.history = history
        self.params = params
        self.last_params = params if last_params is None else last_params

    def __reduce__(self):            # so that it crosses process boundaries with its attributes
        return type(self), (str(self), self.step, self.history, self.params, self.last_params)


class FitWarning(UserWarning):
    """fit returned the best parameters it saw rather than its last ones (the loss rose at the end)."""


def fit(target, K, steps, batch_size, lr=1e-2, anneal_steps=None, rng=None, *, params=None,
        lr_final=None, progress=True, callback=None, checkpoint=None, checkpoint_every=1000,
        resume=None, label=None, population=None, dim=None, engine="auto", start="auto", x0=None,
        gradient="full", keep_best=True, stop="auto", blas_threads=1, differences="auto"):
    """Fit a K-layer planar flow to ``target`` by minimising the reverse KL with Adam.

    Parameters
    ----------
    target : an object with ``dim`` and ``energy(z) -> (N,)``, z of shape (N, dim), U = −log p up
        to a constant; optionally ``grad(z) -> (N, dim)`` or ``energy_and_grad(z) -> (U, ∇U)``
        (without either, finite differences; see planarflow.Target), ``name``, ``log_z``
    K : int ≥ 1, number of planar layers
    steps : int ≥ 1, the number of Adam steps — the most it may take when the run stops once it
        has converged (``stop``)
    batch_size : int ≥ 1, fresh N(0, I) samples per step
    lr : float > 0, Adam's learning rate (the start of the schedule when lr_final is given)
    anneal_steps : int ≥ 0 or None; β_τ = min(1, 0.01 + τ/anneal_steps) at step τ, β = 1 when 0.
        None (default): the library's choice — ANNEAL_FROM_MODE = 200 steps when the flow starts at
        a Laplace approximation (a start at the mode, or a Mode given), which is already close to
        the target; 0 otherwise (the paper's targets, a start from params)
    rng : seed or Generator; the only source of randomness (initial parameters and noise)
    start : where the flow starts.
        "mode": at the Laplace approximation N(x*, H⁻¹) at a mode x* of U, found by Newton's
        method from ``x0`` (default the origin; library/mode.py); the flow gets a learnable base
        (base.py) and is trained in that frame, so that the target's units and
        correlations do not matter. If no isolated mode is found, a FitWarning says why and the
        flow starts at N(0, I) with a learnable base.
        "standard": at N(0, I) with no learnable base — the paper's setting.
        "auto" (default): "standard" for the paper's U1–U4 (planarflow.get_target: U1 has two
        modes and U2–U4 a ridge of them, and the figure is the paper's), "mode" for any other
        target. A planarflow.Mode (from planarflow.find_mode) is used as given.
        With ``params`` the start is those parameters: a flow with a base is trained in the frame
        of that base (its units), one without as it is.
    x0 : optional array (dim,), where the mode search begins (only with a mode search: start="mode",
        or "auto" for a target other than the paper's)
    params : optional starting parameters (a copy is trained); default init_params(K, d, rng).
        With a population: arrays with a leading axis of P members.
    lr_final : optional float > 0; cosine decay of the learning rate from lr to lr_final
    progress : bool, print a line every few seconds to stderr (False: silent)
    callback : optional callable, called after every step as callback(t, loss, beta)
    checkpoint : optional path; every ``checkpoint_every`` steps and at the end the parameters,
        Adam's state, the history, the generator's state, the frame and the settings (target
        included) are written there atomically. The path is checked before the first step.
    resume : optional path of such a checkpoint; the run continues from it and ends exactly as
        the uninterrupted run with the same arguments would (``params`` and ``rng`` must be None;
        ``start`` and ``x0`` may be left out, or given as the checkpointed run had them)
    label : optional text for progress lines
    population : optional int P ≥ 1; train P independent flows at once (each with its own
        initialisation and its own batch of noise) and return them all. Adam updates every
        parameter on its own, so this is exactly P separate runs; with engine="fused" one NumPy
        call serves all P flows. Not combined with checkpoint or resume.
    dim : the dimension d, if the target has no ``dim`` (or to confirm it)
    engine : "reference": every step runs planarflow/reference.py's functions, the code a student
        reads and edits; "fused": planarflow/fused.py, the same numbers to rounding, two to six
        times faster; "auto" (default): "reference" for the paper's U1–U4 (the lesson's own
        calls, so that a student who edits reference.py sees the effect), "fused" for any other
        target (a researcher's). A resumed run left at "auto" keeps its checkpoint's engine.
    gradient : "full" (default) or "path": the path-derivative estimator ("sticking the landing",
        path_gradient.py) — the same expected gradient, with the score term's noise dropped, so
        that the gradient's variance vanishes as the flow reaches the target.

    keep_best : bool (default True): return the best parameters instead of the last ones when the
        run ends worse than its best (below); False returns the last ones whatever happened —
        what a plain training loop does (the PyTorch implementation's recipe is run this way).
    stop : "converged": stop once the loss has stopped falling beyond its own noise (below), with
        ``steps`` the most it may take; "steps": take every one of them; "auto" (default):
        "steps" for the paper's U1–U4 (their figure is a fixed recipe's) and for a population,
        "converged" for any other target. A resumed run left at "auto" keeps its checkpoint's rule.
    differences : how the gradient of an energy without one is estimated while training
        (library/differences.py): "coordinates", forward differences along each axis, d + 1
        energies a point; "directions", in the Laplace frame, the quadratic's gradient plus the
        remainder's along DIRECTIONS random ±1 directions a point — unbiased, DIRECTIONS + 1
        energies a point whatever d; "auto" (default): "directions" from d = DIRECTIONS_FROM on
        when the flow trains in a Laplace frame, "coordinates" otherwise.
    blas_threads : int ≥ 1 or None (default 1): NumPy's BLAS threads while the fit runs, restored
        after it (library/threads.py: one thread is fastest for a fit's small products, and much
        faster on a busy machine); None leaves them as they are.

    Returns
    -------
    params : dict u (K, d), w (K, d), b (K,) — and mu (d,), log_sigma (d,), lower (d, d) when the
        flow has a learnable base; with a population, a leading axis of P members on each
    history : dict: ``loss`` (steps,) — (steps, P) with a population — ``beta`` and ``lr`` of
        every step taken, the loss in the target's own coordinates (≥ −log Z at β = 1);
        ``returned_step``, how many steps the returned parameters had taken (one per member);
        ``steps_taken`` and ``stop_reason``, where the run ended and why.

    Converged means: at β = 1, checked every 100 steps once 500 have passed and a quarter of
    ``steps`` is done, no earlier 100-step window — the one before the last, the one three before
    it, the one halfway back through the steps at β = 1 — has a mean loss above the last window's
    by more than two standard errors of their difference (each window's spread over √100), at two
    checks in a row. So a run stops only once its loss has been flat, within its Monte-Carlo
    noise, over the second half of its steps at β = 1: a slow drift shows over that horizon even
    where noise hides it from one window to the next. (Measured where stopping early would be
    wrong: python -m planarflow benchmark --stopping.)

    The parameters returned are the last ones, unless (with keep_best) the loss smoothed over the last
    max(10, min(200, steps/20)) steps at β = 1 ended worse than the best it reached by more than
    0.05 nats plus five of its standard errors: then they are those best parameters, and a
    FitWarning says so (a run that blows up late cannot silently return worse than it had).

    Raises
    ------
    TrainingDiverged
        when a loss or gradient is not finite, or a step leaves the parameters' domain (see
        planarflow/library/validation.py); it carries the best and the last valid parameters.
    ValueError
        when the target's energy or gradient is not finite at the very first batch (the target,
        not the training, is at fault), and for every bad argument.
    """
    settings = Settings(target, K, steps, batch_size, lr, anneal_steps, lr_final, progress, callback, checkpoint,
                        checkpoint_every, label, population, dim, engine, start, x0, gradient, keep_best, stop,
                        differences)
    settings.check_start(params, rng, resume)
    if blas_threads is not None:
        blas_threads = as_int(blas_threads, "blas_threads", maximum=1024)
    with threads.blas_threads(blas_threads):
        run = Run(target, settings)
        if resume is not None:
            run.resume(resume)
        else:
            run.start(params, rng)
        run.train()
    return run.finish()


class Settings:
    """fit's arguments, every one checked before any work — a ValueError or TypeError naming it.

    ``kind`` is where the flow starts: "standard" (N(0, I), no base), "mode" (a mode search, then
    its Laplace frame), "given" (a planarflow.Mode's frame); ``record`` what a checkpoint keeps
    and a resumed run must match."""

    def __init__(self, target, K, steps, batch_size, lr, anneal_steps, lr_final, progress, callback, checkpoint,
                 checkpoint_every, label, population, dim, engine, start, x0, gradient, keep_best, stop,
                 differences="auto"):
        for flag, value, allowed in (("engine", engine, ENGINES), ("gradient", gradient, GRADIENTS)):
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{flag}: expected one of {list(allowed)}, got {value!r}")
        paper = getattr(target, "paper_figure", False) is True
        self.engine_given = engine != "auto"
        self.engine = engine if self.engine_given else "reference" if paper else "fused"
        self.gradient = gradient
        self.dim = dim = target_dim(target, dim)
        self.K = as_int(K, "K", maximum=MAX_ENTRIES)
        self.steps = as_int(steps, "steps", maximum=MAX_STEPS)
        self.batch_size = as_int(batch_size, "batch_size", maximum=MAX_ENTRIES)
        self.lr = as_float(lr, "lr", low=0.0, low_open=True)
        self.lr_final = None if lr_final is None else as_float(lr_final, "lr_final", low=0.0, low_open=True)
        self.anneal_steps = (None if anneal_steps is None else
                             as_int(anneal_steps, "anneal_steps", minimum=0, maximum=MAX_STEPS))
        self.checkpoint_every = as_int(checkpoint_every, "checkpoint_every", maximum=MAX_STEPS)
        for flag, value in (("progress", progress), ("keep_best", keep_best)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{flag}: expected True or False, got {value!r}")
        self.progress, self.keep_best = bool(progress), bool(keep_best)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label: expected a string or None, got {type(label).__name__}")
        self.callback, self.label = callback, label or f"{getattr(target, 'name', 'target')} K={self.K}"
        self.population = None if population is None else as_int(population, "population", maximum=MAX_ENTRIES)
        self.P = self.population or 1
        sizes = {"K": self.K + 1, "population": self.P, "batch_size": self.batch_size, "dim": dim + 2}
        check_size(max(sizes, key=sizes.get), *sizes.values(), 2)            # the engine's buffers; blame the largest
        if not has_gradient(target) and (2 * dim + 1) * dim > MAX_ENTRIES:
            raise ValueError(f"target: it has no gradient, and differences of its energy in d = {dim} shift each "
                             f"point {2 * dim + 1} times, {(2 * dim + 1) * dim:.3g} numbers a point, more than the "
                             f"{MAX_ENTRIES:.0e} allowed; give the target a gradient")
        self.has_grad = has_gradient(target)
        self.checkpoint = None if checkpoint is None else check_output_path(checkpoint, "checkpoint")
        self._start_arguments(target, start, x0)
        if not isinstance(stop, str) or stop not in STOPS:
            raise ValueError(f"stop: expected one of {list(STOPS)}, got {stop!r}")
        if stop == "converged" and self.population is not None:
            raise ValueError("stop: 'converged' is for a single flow; a population takes its steps")
        self.stop_given = stop != "auto"
        if stop == "auto":
            stop = "steps" if paper or self.population is not None else "converged"
        self.stop = stop
        self._differences(differences)
        self.record = {"K": self.K, "dim": dim, "batch_size": self.batch_size, "lr": self.lr,
                       "lr_final": self.lr_final, "anneal_steps": self.anneal_steps, "steps": self.steps,
                       "engine": self.engine, "gradient": gradient, "target": target_identity(target),
                       "start": "Mode" if self.mode is not None else start,
                       "x0": None if self.x0 is None else self.x0.tolist(), "stop": stop,
                       "differences": differences}

    def _differences(self, differences):
        if not isinstance(differences, str) or differences not in DIFFERENCES:
            raise ValueError(f"differences: expected one of {list(DIFFERENCES)}, got {differences!r}")
        if differences == "directions" and self.has_grad:
            raise ValueError("differences: the target has its own gradient; 'directions' is for an energy "
                             "without one")
        if differences == "directions" and self.kind == "standard":
            raise ValueError("differences: 'directions' estimates the gradient around a Laplace frame, and "
                             "this fit starts at N(0, I) (start='standard'); use start='mode' or "
                             "differences='coordinates'")
        self.directions = (not self.has_grad and (differences == "directions"
                                                   or (differences == "auto" and self.dim >= DIRECTIONS_FROM)))

    def _start_arguments(self, target, start, x0):
        if not isinstance(start, Mode) and (not isinstance(start, str) or start not in STARTS):
            raise ValueError(f"start: expected one of {list(STARTS)} or a planarflow.Mode, got {start!r}")
        self.start_given = isinstance(start, Mode) or start != "auto"
        self.mode = check_mode(start, self.dim) if isinstance(start, Mode) else None
        kind = "given" if self.mode is not None else start
        if kind == "auto":
            kind = "standard" if getattr(target, "paper_figure", False) else "mode"
        self.kind = kind
        self.x0 = None if x0 is None else as_array(x0, "x0", shape=(self.dim,))
        if x0 is not None and kind != "mode":
            raise ValueError(f"x0: it is where the mode search begins, and this fit searches for no mode "
                             f"(start={'a planarflow.Mode' if self.mode is not None else repr(start)}"
                             f"{' on one of the paper’s targets' if start == 'auto' else ''}); pass "
                             f"start='mode' to search from x0, or leave x0 out")

    def check_start(self, params, rng, resume):
        """The arguments that say where the run begins, against each other and against sizes."""
        if self.population is not None and (self.checkpoint is not None or resume is not None):
            raise ValueError("population: cannot be combined with checkpoint or resume")
        if resume is not None and (params is not None or rng is not None):
            raise ValueError(f"{'params' if params is not None else 'rng'}: a resumed run continues the "
                             f"checkpoint's parameters and generator; pass neither params nor rng with resume")
        if params is not None and self.start_given:
            raise ValueError("start: a run that starts from params starts there; leave start at its default")
        if params is not None and self.x0 is not None:
            raise ValueError("x0: a run that starts from params starts there; leave x0 out")
        fresh = params is None and resume is None
        d = self.dim
        if fresh and self.kind != "standard" and 3 * self.P * d * d > MAX_ENTRIES:
            raise ValueError(f"dim: a flow with a learnable base in d = {d} holds a ({d}, {d}) matrix, "
                             f"{3 * self.P * d * d:.3g} numbers with Adam's moments, more than the "
                             f"{MAX_ENTRIES:.0e} allowed; start='standard' trains a flow without one")
        if fresh and self.kind == "mode":
            check_search_size(d, self.has_grad)


class Run:
    """One training run: its state as attributes and one method per concern (CS231n's Solver).

    State: the settings ``s``; the target, checked (``checked``), and the frame it is trained in
    (``frame``: the Laplace frame x = x* + R·y, or None); the parameters — ``params`` as fit returns
    them, and ``members``, the same arrays with a leading axis of P flows (views of ``params`` when
    P = 1, so that Adam's in-place steps reach both); ``adam`` with its moments; the generator;
    ``history``; the best-parameters ``keeper``; ``last``, the last valid parameters; ``t``, the
    step being taken. Methods, in the order a run meets them: ``start`` or ``resume``, ``train``
    (reference.fit's loop, with ``loss_and_gradient`` and ``after_step`` as its hooks),
    ``write_checkpoint``, ``diverged``, ``finish``.
    """

    def __init__(self, target, settings):
        self.s = settings
        self.checked = CheckedTarget(target, settings.dim, finite=False)
        self.checked.blocks = (2 * settings.dim + 1, settings.batch_size)    # the user's function sees two shapes
        self.report = Progress(enabled=settings.progress)
        self.adam = reference.Adam(settings.lr)
        self.history = {"loss": [], "beta": [], "lr": []}
        self.frame, self.t = None, 0
        self.anneal, self.keeper_state, self.stop_reason, self.started_fresh = None, None, None, False
        self.directions_seed = None

    # --- where the run begins --------------------------------------------------------------------

    def start(self, params, rng):
        """A new run: from ``params`` (a flow with a base is trained in its own base's frame), or
        from init_params — at N(0, I), or with a learnable base at the Laplace frame of a mode."""
        s = self.s
        self.rng = make_rng(rng)
        self.started_fresh = params is None
        if params is not None:
            params = _check_start(params, s.K, s.dim, s.population)
            if s.population is None and "mu" in params:                # train in the units of its own base
                A = base.base_matrix(params["log_sigma"], params["lower"])
                self.frame = Frame(self.checked, params["mu"], A)
                params = dict(params, mu=np.zeros(s.dim), log_sigma=np.zeros(s.dim), lower=np.zeros((s.dim, s.dim)))
        else:
            if s.kind == "given":
                self.frame = Frame(self.checked, *s.mode)
            elif s.kind == "mode":
                self.frame = self.laplace_frame()
            init = reference.init_params if s.kind == "standard" else base.init_params
            members = [init(s.K, s.dim, self.rng) for _ in range(s.P)]
            params = members[0] if s.population is None else {k: np.stack([m[k] for m in members])
                                                              for k in param_keys(members[0])}
        if s.directions and self.frame is not None:
            self.directions_seed = int(self.rng.integers(2 ** 62))     # the directions' own stream
        self.prepare(params)

    def laplace_frame(self):
        """The Laplace frame of the target's mode; on failure, a FitWarning and None (N(0, I))."""
        try:
            mode = find_mode(self.checked, self.s.x0)
        except ModeNotFound as exc:
            warnings.warn(f"start: no isolated mode found ({exc}); the flow starts at N(0, I) with a "
                          f"learnable base instead. If the target's mass is far from the origin or far "
                          f"from unit scale, pass x0 near it or start=planarflow.find_mode(target, x0).",
                          FitWarning, stacklevel=4)
            return None
        self.report.update(f"{self.s.label}: start at the mode found in {mode.iterations} Newton steps, "
                           f"U = {mode.energy:.6g}", force=True)
        return Frame(self.checked, mode.x, mode.scale)

    def resume(self, path):
        """Continue a checkpointed run: its parameters, Adam, history, generator and frame."""
        params, self.rng, self.t, frame, state = _resume(path, self.s, self.adam, self.history)
        if frame is not None:
            self.frame = Frame(self.checked, *frame)
        self.anneal, self.stop_reason, self.keeper_state, self.directions_seed = state
        self.prepare(params)

    def prepare(self, params):
        """The arrays the loop works on: a population of P members (one, for a single flow)."""
        s = self.s
        self.params, self.keys = params, param_keys(params)
        self.members = params if s.population else {k: params[k][None] for k in self.keys}
        if not s.population:
            self.adam.m = {k: m[None] for k, m in self.adam.m.items()}
            self.adam.v = {k: v[None] for k, v in self.adam.v.items()}
        self.keeper = BestKeeper(self.members, s.steps, self.t)
        if self.keeper_state is not None:                   # a resumed run: the keeper as it was
            self.keeper.restore(*self.keeper_state)
        if self.anneal is None:                      # the library's choice: a short climb from a Laplace start
            laplace = self.started_fresh and self.frame is not None
            self.anneal = s.anneal_steps if s.anneal_steps is not None else ANNEAL_FROM_MODE if laplace else 0
        self.last = {k: np.empty_like(v) for k, v in self.members.items()}
        self.log_det = 0.0 if self.frame is None else self.frame.log_det   # loss in x = loss in the frame − log det R
        self.step_fn = _reference_step if s.engine == "reference" else _fused_step(fused.Workspace())
        if self.frame is not None and self.directions_seed is not None:
            self.frame.directions, self.frame.seed, self.frame.block = DIRECTIONS, self.directions_seed, s.batch_size
        self.checked.training = True             # from now on every energy is followed by its gradient

    # --- the loop: reference.fit, with this run's hooks ----------------------------------------------

    def train(self):
        s = self.s
        if self.stop_reason is None:                     # (a checkpoint of a run that had stopped: done)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                try:
                    reference.fit(self.checked if self.frame is None else self.frame, s.K, s.steps, s.batch_size,
                                  lr=s.lr, anneal_steps=self.anneal, rng=self.rng, lr_final=s.lr_final,
                                  dim=s.dim, callback=self.after_step, params=self.members,
                                  objective=self.loss_and_gradient, adam=self.adam, start=self.t,
                                  shape=(s.P, s.batch_size, s.dim))
                except Converged:
                    pass
        self.report.close()
        if self.stop_reason is None:
            self.stop_reason = f"took all {s.steps} steps"

    def loss_and_gradient(self, p, z0, target, beta):
        """The engine's loss and gradient, checked before Adam may use them."""
        self.checked.nonfinite = None            # (what the mode search met is not this step's)
        if self.frame is not None:
            self.frame.at_step(self.t)
        losses, grads = self.step_fn(p, z0, target, beta, self.s.gradient)
        # One check of everything: a NaN or ±inf anywhere makes the sum non-finite.
        if not math.isfinite(float(losses.sum() + sum(g.sum() for g in grads.values()))):
            self.diverged(self.not_finite())
        for k in self.keys:
            np.copyto(self.last[k], p[k])
        return losses, grads

    def not_finite(self):
        """What made the loss or gradient not finite — the target (ValueError at the first batch:
        the target, not the training, is at fault), the flow, or the arithmetic."""
        bad = self.checked.nonfinite
        if bad is not None and not np.all(np.isfinite(bad[3])):     # the flow's own points: not the target
            return "the flow's parameters stopped being finite (the points it reached are not)"
        if bad is None:
            return "the loss or its gradient is not finite"
        what = (f"target.{bad[0]} returned NaN or infinite values at {bad[1]} of {bad[2]} points "
                f"the flow reached, e.g. at {np.array2string(bad[3], precision=4, max_line_width=200)}")
        if self.t == 0:
            raise ValueError(what + " in its first batch: the energy must be finite wherever the flow can "
                             "reach (if the density is zero outside a region, transform to unconstrained "
                             "coordinates)")
        return what

    def after_step(self, t, losses, beta):
        """The step is taken: check the domain, record it, keep the best, write, report."""
        s = self.s
        at_end = t + 1 == s.steps or (s.checkpoint is not None and (t + 1) % s.checkpoint_every == 0)
        outside = param_domain_violation(self.members, full=at_end)
        if outside is not None:
            for k in self.keys:
                np.copyto(self.members[k], self.last[k])
            self.diverged(f"the step left the parameters' domain: {outside}")
        self.t = t + 1
        losses = losses - self.log_det
        self.keeper.update(t, losses, beta, self.members)
        loss = losses if s.population else float(losses[0])
        self.history["loss"].append(loss)
        self.history["beta"].append(beta)
        self.history["lr"].append(self.adam.lr)
        if s.stop == "converged":
            self.stop_reason = converged(self.history["loss"], self.history["beta"], s.steps)
        if s.checkpoint is not None and (self.t % s.checkpoint_every == 0 or self.t == s.steps or self.stop_reason):
            self.write_checkpoint()
        if s.callback is not None:
            s.callback(t, loss, beta)
        if self.report.due():
            self.report.update(f"{s.label}: step {self.t}/{s.steps}  loss {np.min(loss):+.4f}  β {beta:.2f}  "
                               f"({self.report.elapsed():.0f} s)")
        if self.stop_reason is not None:
            raise Converged

    def write_checkpoint(self):
        keeper_meta, keeper_params = self.keeper.state()
        meta = dict(self.s.record, step=self.t, anneal_used=self.anneal, stop_reason=self.stop_reason,
                    directions_seed=self.directions_seed,
                    keeper=keeper_meta)
        save_checkpoint(self.s.checkpoint, self.params, {k: m[0] for k, m in self.adam.m.items()},
                        {k: v[0] for k, v in self.adam.v.items()}, self.adam.tau, self.history, self.rng, meta,
                        None if self.frame is None else (self.frame.center, self.frame.R), keeper_params)

    def unframe(self, params):
        """Parameters trained in the frame, expressed in the target's own coordinates."""
        return params if self.frame is None else self.frame.fold(params)

    def diverged(self, what):
        """Stop with TrainingDiverged, carrying the best and the last valid parameters."""
        s, keeper = self.s, self.keeper
        best = keeper.best_or(self.last)
        if s.population is None:
            best = {k: v[0] for k, v in best.items()}
            last_valid = {k: v[0].copy() for k, v in self.last.items()}
        else:
            last_valid = {k: v.copy() for k, v in self.last.items()}
        which = ("the best parameters seen (by the smoothed loss at β = 1) are in its .params, the last "
                 "valid ones in .last_params" if keeper.any_best() else
                 "the last valid parameters are in its .params")
        raise TrainingDiverged(
            f"training diverged at step {self.t}: {what}. {which.capitalize()}, the history so far in "
            f".history. Try a smaller learning rate (lr = {s.lr:g} now) or longer annealing "
            f"(anneal_steps = {s.anneal_steps} now).",
            step=self.t, history=_history_arrays(self.history), params=self.unframe(best),
            last_params=self.unframe(last_valid))

    # --- the end ---------------------------------------------------------------------------------

    def finish(self):
        """(params, history): the best parameters if the run ended worse than its best (a
        FitWarning says so), in the target's own coordinates; the history as arrays."""
        s, keeper = self.s, self.keeper
        if s.keep_best:
            returned = keeper.finish(self.members, self.t)
        else:
            returned, keeper.returned_step = None, np.full(s.P, self.t)
        if returned is not None:
            warnings.warn(returned, FitWarning, stacklevel=3)
        out = _history_arrays(self.history)
        out["returned_step"] = keeper.returned_step if s.population else int(keeper.returned_step[0])
        out["steps_taken"], out["stop_reason"] = self.t, self.stop_reason
        return self.unframe(self.params), out


class Converged(Exception):
    """Raised by Run.after_step to end reference.fit's loop once the run has converged."""


STOP_WINDOW = 100            # steps a window of the loss holds for the convergence rule


def converged(losses, betas, steps, window=STOP_WINDOW):
    """The reason a run has converged, or None: a pure function of the history, so that a resumed
    run stops where the uninterrupted one does. At β = 1, every ``window`` steps once five windows
    have passed and a quarter of ``steps`` is done, the loss is still falling if the mean of the
    last window lies below that of an earlier window — the one before it, the one three before it,
    or the one halfway back through the steps at β = 1 — by more than two standard errors of the
    difference (each window's sd over √window). Converged when two checks in a row see no fall."""
    n = len(losses)
    at_one = n - next((i for i in range(n - 1, -1, -1) if betas[i] < 1.0), -1) - 1       # steps at β = 1
    if at_one < 5 * window or at_one % window or 4 * n < steps:
        return None
    x = np.asarray(losses[n - at_one:], dtype=np.float64)
    for end in (x.size - window, x.size):                       # the previous check, then this one
        last = x[end - window:end]
        for back in sorted({1, 3, max(1, end // (2 * window))}):
            earlier = x[end - (back + 1) * window:end - back * window]
            se = np.sqrt((last.var(ddof=1) + earlier.var(ddof=1)) / window)
            if earlier.mean() - last.mean() > 2.0 * se:
                return None
    return (f"converged at step {n}: at the last two checks the loss had not fallen beyond its noise since "
            f"{window} steps, {3 * window} steps or half its steps at β = 1 before "
            f"(mean of the last {window} steps {x[-window:].mean():+.4f})")


def _history_arrays(history):
    return {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}


class BestKeeper:
    """The best parameters of each member by its loss smoothed over the last W steps at β = 1.

    Smoothed: an exponential moving average m ← m + (ℓ − m)/W, with W = max(10, min(200, steps/20)),
    and a running variance of ℓ around it, v; the average's standard error is √(v/(2W − 1)).
    Every W/10 steps (the average barely moves in between), once W steps at β = 1 have passed, a
    member's parameters are copied if its average is its lowest yet.
    """

    def __init__(self, members, steps, begin):
        P = members["u"].shape[0]
        self.W = max(10, min(200, steps // 20))
        self.stride = max(1, self.W // 10)
        self.mean, self.var, self.count = np.zeros(P), np.zeros(P), 0
        self.best = np.full(P, np.inf)
        self.best_step = np.zeros(P, dtype=int)
        self.params = {k: np.empty_like(v) for k, v in members.items()}
        self.returned_step = np.full(P, begin)

    def update(self, t, losses, beta, members):
        if beta < 1.0:                       # the objective changes while β < 1: start again after
            self.count = 0
            return
        if self.count == 0:
            self.mean, self.var = losses.copy(), np.zeros_like(losses)
        else:
            delta = losses - self.mean
            self.mean += delta / self.W
            self.var = (1.0 - 1.0 / self.W) * (self.var + delta * delta / self.W)
        self.count += 1
        if self.count >= self.W and self.count % self.stride == 0:
            better = self.mean < self.best
            if better.any():
                for k, v in members.items():
                    np.copyto(self.params[k], v, where=better.reshape((-1,) + (1,) * (v.ndim - 1)))
                self.best = np.where(better, self.mean, self.best)
                self.best_step[better] = t + 1

    def any_best(self):
        return bool(np.isfinite(self.best).any())

    def state(self):
        """(numbers for a checkpoint's metadata, the best parameters of member 0 or None) — what
        restore() needs to go on exactly as before."""
        meta = {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count,
                "best": [float(b) if np.isfinite(b) else None for b in self.best],
                "best_step": self.best_step.tolist()}
        return meta, ({k: v[0] for k, v in self.params.items()} if self.any_best() else None)

    def restore(self, meta, params):
        """Put back a checkpointed keeper (meta from state(), its best parameters or None)."""
        self.mean, self.var = np.array(meta["mean"], dtype=float), np.array(meta["var"], dtype=float)
        self.count = int(meta["count"])
        self.best = np.array([np.inf if b is None else b for b in meta["best"]], dtype=float)
        self.best_step = np.array(meta["best_step"], dtype=int)
        if params is not None:
            for k, v in params.items():
                self.params[k][0] = v

    def best_or(self, fallback):
        """Each member's best parameters, or ``fallback``'s where it has none yet."""
        have = np.isfinite(self.best)
        return {k: np.where(have.reshape((-1,) + (1,) * (v.ndim - 1)), self.params[k], fallback[k])
                for k, v in fallback.items()}

    def finish(self, members, steps):
        """Put back the best parameters of members that ended worse; returns a message or None."""
        self.returned_step = np.full(members["u"].shape[0], steps)
        if self.count < self.W:
            return None
        margin = 0.05 + 5.0 * np.sqrt(self.var / (2 * self.W - 1))
        worse = self.mean > self.best + margin
        if not worse.any():
            return None
        for k, v in members.items():
            v[worse] = self.params[k][worse]
        self.returned_step[worse] = self.best_step[worse]
        i = int(np.argmax(worse))
        who = "" if worse.size == 1 else f"{int(worse.sum())} of {worse.size} members, e.g. member {i}: "
        return (f"fit: the loss rose at the end ({who}smoothed {self.mean[i]:+.4g} after the last step, "
                f"{self.best[i]:+.4g} at step {self.best_step[i]}); returning the parameters of step "
                f"{self.best_step[i]}, the best seen. A smaller learning rate (or lr_final) may avoid it.")


def _reference_step(members, z0, target, beta, gradient):
    """The loss and gradient of each member through the lesson's reverse_kl, one member at a time:
    reference.py's, base.py's for a flow with a base, path_gradient.py's for gradient="path"."""
    lesson = path_gradient if gradient == "path" else base if "mu" in members else reference
    results = [lesson.reverse_kl({k: v[p] for k, v in members.items()}, z0[p], target, beta)
               for p in range(z0.shape[0])]
    losses = np.array([loss for loss, _ in results])
    return losses, {k: np.stack([g[k] for _, g in results]) for k in members}


def _fused_step(ws):
    """The same through fused.reverse_kl_members, all members at once, in a kept Workspace."""
    def step(members, z0, target, beta, gradient):
        return fused.reverse_kl_members(members, z0, target, beta, ws, gradient)
    return step


def target_identity(target):
    """A text that tells targets apart, recorded in checkpoints: the repr of planarflow's own
    targets (name, box, wall or mean, std), the class and dimension of anyone else's."""
    own = getattr(target, "identity", None)
    if isinstance(own, str):
        return own
    cls = type(target)
    return f"{cls.__module__}.{cls.__qualname__} (dim {getattr(target, 'dim', None)!r})"


def _check_start(params, K, dim, population):
    """A checked copy of starting parameters for K layers in dim dimensions (P members of them)."""
    if population is None:
        return _check_one(params, K, dim, "params")
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict with keys {list(PARAM_KEYS)}, got {type(params).__name__}")
    keys = PARAM_KEYS + BASE_KEYS if "mu" in params else PARAM_KEYS
    if set(params) != set(keys):
        raise ValueError(f"params: expected exactly the keys {list(keys)}, got {sorted(map(str, params))}")
    members = []
    for i in range(population):
        member = {}
        for k in keys:
            shape = np.shape(params[k])
            if len(shape) < 1 or shape[0] != population:
                raise ValueError(f"params[{k!r}]: with population = {population}, expected an array with a "
                                 f"leading axis of {population} members, got shape {shape}")
            member[k] = np.asarray(params[k])[i]
        members.append(_check_one(member, K, dim, f"params member {i}"))
    return {k: np.stack([m[k] for m in members]) for k in keys}


def _check_one(params, K, dim, name):
    params, pK, pd = check_params(params, name)
    if (pK, pd) != (K, dim):
        raise ValueError(f"{name}: expected K = {K} layers in {dim} dimensions, got K = {pK}, d = {pd}")
    return {k: params[k].copy() for k in param_keys(params)}


def _resume(path, s, adam, history):
    """Restore parameters, Adam, history and the generator from a checkpoint; returns
    (params, rng, the start step, the frame (x*, R) or None, (the anneal the run used, why it
    stopped or None, the keeper's state or None))."""
    params, m, v, saved_history, meta, frame, best = load_checkpoint(path)
    _adopt_choices(s, meta)
    for key in ("K", "dim", "batch_size", "lr", "lr_final", "anneal_steps", "steps", "engine", "gradient", "target",
                "stop", "differences"):
        if meta.get(key, {"gradient": "full", "stop": "steps", "differences": "auto"}.get(key)) != s.record[key]:
            raise ValueError(
                f"resume: the checkpoint {path!r} was written by a run with {key} = {meta.get(key)!r}, "
                f"this call has {key} = {s.record[key]!r}; resume with the same settings")
    for key in ("start", "x0"):              # given again (not left at the default): the same as before
        if s.record[key] != (None if key == "x0" else "auto") and meta.get(key, "?") != s.record[key]:
            raise ValueError(
                f"{key}: the checkpoint {path!r} was written by a run with {key} = {meta.get(key, 'unrecorded')!r}, "
                f"this call has {key} = {s.record[key]!r}; resume with the same {key}, or leave it out "
                f"(a resumed run starts where the checkpoint is)")
    if s.mode is not None and (frame is None or not (np.array_equal(frame[0], s.mode[0])
                                                     and np.array_equal(frame[1], s.mode[1]))):
        raise ValueError(f"start: this Mode is not the frame the checkpoint {path!r} was trained in; resume "
                         f"with the same Mode, or leave start out")
    K, d = params["u"].shape
    if (K, d) != (s.K, s.dim):
        raise ValueError(f"resume: the checkpoint {path!r} holds arrays of K = {K} layers in d = {d} "
                         f"dimensions, but its metadata says K = {meta.get('K')!r}, dim = {meta.get('dim')!r}")
    start = meta.get("step")
    if not isinstance(start, int) or not 0 <= start <= s.steps or start != len(saved_history["loss"]):
        raise ValueError(f"resume: the checkpoint {path!r} records an inconsistent step count")
    state = meta.get("rng_state")
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        raise ValueError(f"resume: the checkpoint {path!r} holds no usable generator state")
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"resume: the checkpoint {path!r} holds a corrupt generator state ({exc})") from None
    adam_t = meta.get("adam_t")
    if not isinstance(adam_t, int) or isinstance(adam_t, bool) or adam_t != start:
        raise ValueError(f"resume: the checkpoint {path!r} records Adam's step count {adam_t!r} after "
                         f"{start} steps; they must be equal")
    adam.m, adam.v, adam.tau = m, v, adam_t
    history.update(saved_history)
    return params, rng, start, frame, _run_state(path, meta, best, start)


def _adopt_choices(s, meta):
    """The engine and stopping rule a resumed run left at "auto" takes from its checkpoint (a
    checkpoint written before the rule existed took all its steps)."""
    for key, given, allowed in (("engine", s.engine_given, ENGINES[1:]), ("stop", s.stop_given, STOPS[1:])):
        saved = meta.get(key, "steps" if key == "stop" else None)
        if not given and saved in allowed:          # (a population is never checkpointed)
            setattr(s, key, saved)
            s.record[key] = saved


def _run_state(path, meta, best, start):
    """The anneal, the stop reason and the keeper a checkpoint records, checked (a file is not trusted)."""
    anneal, reason, keeper = meta.get("anneal_used"), meta.get("stop_reason"), meta.get("keeper")
    bad = not (anneal is None or (isinstance(anneal, int) and not isinstance(anneal, bool) and 0 <= anneal <= MAX_STEPS))
    bad |= not (reason is None or (isinstance(reason, str) and len(reason) < 1000))
    seed = meta.get("directions_seed")
    bad |= not (seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2 ** 62))
    if keeper is not None:
        def numbers(key, n=1):
            value = keeper.get(key) if isinstance(keeper, dict) else None
            return isinstance(value, list) and len(value) == n and all(
                x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)) for x in value)
        bad |= not (all(numbers(k) for k in ("mean", "var", "best", "best_step"))
                    and isinstance(keeper.get("count"), int) and 0 <= keeper["count"] <= start
                    and None not in keeper["mean"] + keeper["var"] + keeper["best_step"]
                    and (keeper["best"][0] is None) == (best is None))
    if bad:
        raise ValueError(f"resume: the checkpoint {path!r} records an unreadable annealing, stop or "
                         f"best-parameters state")
    return anneal, reason, None if keeper is None else (keeper, best), seed
