"""Running the Figure 3 experiment: one job is one (target, K) fit with its recipe's settings;
``run_job`` trains it with ``fit`` and scores it (exact KL with its standard error, importance-
sampling ESS and k̂, the density on the plotting grid); ``run_jobs`` runs many jobs on several
worker processes — the fits are independent — and reports progress as they go. A worker that
fails or dies is named with its job; Ctrl-C leaves no process behind."""

import multiprocessing
import os
import queue as queue_module
import signal
import sys
import time
import traceback
import warnings

import numpy as np

from ..library.api import get_target, importance_log_z, kl_divergence, log_partition
from ..library.progress import Progress, say
from ..library.training import FitWarning, TrainingDiverged, fit
from ..library.validation import check_size
from .plotting import flow_density_on_grid
from .recipes import TARGETS, KS, RECIPES, recipe, uniform_start


def check_job(job, dim=2):
    """Refuse, before any work, a job whose buffers would exceed planarflow's size limit."""
    from ..library.validation import check_size
    check_size("batch_size", job["K"] + 1, job["batch_size"], dim + 2, 2)
    if job["population"]:
        check_size("population", job["K"] + 1, job["population"], job["population_batch"], dim + 2, 2)


def make_jobs(targets=TARGETS, Ks=KS, seed=0, steps=None, batch_size=None, lr=None,
              grid_n=200, kl_samples=100_000, box=4.0, wall=0.2, layers_target=None, layers_grid_n=120,
              engine="fused", recipe_name="planarflow", gradient=None):
    """One job per (target, K); each gets its own seed, derived from (seed, target, K) (and the
    recipe, for any recipe but planarflow's).

    The job of ``layers_target`` with the largest K also records the density after each number
    of layers (for the layer-by-layer pictures), on a layers_grid_n² grid.
    """
    jobs = []
    for K in Ks:
        for name in targets:
            job = dict(recipe(K, steps, batch_size, lr, recipe_name, gradient), name=name, K=K, box=box, wall=wall,
                       seed=[seed, TARGETS.index(name), K] + ([RECIPES.index(recipe_name)] if recipe_name != "planarflow" else []),
                       grid_n=grid_n, kl_samples=kl_samples, recipe=recipe_name,
                       layers=(name == layers_target and K == max(Ks)), layers_grid_n=layers_grid_n,
                       engine=engine)
            jobs.append(job)
    return jobs


def _cost(job):
    """A rough cost of a job, to start the longest first: samples × (layers + energy)."""
    cost = job["steps"] * job["batch_size"] * (job["K"] + 6)
    if job["population"]:
        cost += job["population_steps"] * job["population"] * job["population_batch"] * (job["K"] + 6)
        if job["keep"]:
            cost += job["keep_steps"] * job["keep"] * job.get("keep_batch", job["population_batch"]) * (job["K"] + 6)
    return cost


def run_job(job, report=None):
    """Fit one (target, K) and score it; returns a dict of plain arrays and numbers.

    The result holds the parameters, the training curve (loss and β of every step; for a
    population, its best member's steps first — ``kept`` marks where the best few of the
    population went on alone, ``switch`` where refining began), the time,
    log Z, the exact KL ± standard error, ESS/n, the density on the plotting grid, and, when
    ``job["layers"]`` is set, the density after each number of layers (``layer_densities``).
    """
    target = get_target(job["name"], box=job["box"], wall=job["wall"])
    rng = np.random.default_rng(job["seed"])
    start = time.perf_counter()
    fitted = train_job(job, target, rng, JobProgress(job, report))
    return score_job(job, target, rng, fitted, time.perf_counter() - start)


class JobProgress:
    """A job's progress across its stages: callbacks for fit that report (label, step of all the
    job's steps, their total, loss) at most twice a second, and at the last step."""

    def __init__(self, job, report):
        self.report, self.label, self.last = report, _label(job), 0.0
        self.total = (job["population_steps"] if job["population"] else 0) + \
            (job["keep_steps"] if job["keep"] else 0) + job["steps"]

    def stage(self, offset):
        """fit's callback for the stage whose first step is the job's step ``offset``."""
        return lambda t, loss, beta: self.update(offset + t + 1, loss)

    def update(self, step, loss):
        now = time.perf_counter()
        if self.report is not None and (now - self.last > 0.5 or step == self.total):
            self.last = now
            self.report((self.label, step, self.total, np.min(loss)))


def train_job(job, target, rng, progress):
    """The job's stages — candidates, the best few, the final run — as a dict: params, history,
    the curve before the final run (loss, beta), the stages' lengths, and where it diverged (or None)."""
    first = job["population_steps"] if job["population"] else 0
    second = job["keep_steps"] if job["keep"] else 0
    params, curve_loss, curve_beta = None, [], []
    if job.get("start") == "uniform":
        params = uniform_start(job["K"], rng)
    try:
        if job["population"]:                # shallow flows: keep the best of a population
            params, curve_loss, curve_beta = train_candidates(job, target, rng, progress)
        params, history = fit(target, job["K"], job["steps"], job["batch_size"], lr=job["lr"],
                              lr_final=job["lr_final"], anneal_steps=job["anneal_steps"], rng=rng,
                              params=params, progress=False, callback=progress.stage(first + second),
                              engine=job["engine"], gradient=job.get("gradient", "full"),
                              keep_best=job.get("keep_best", True))
    except TrainingDiverged as exc:          # score the last valid parameters, and say so
        history, params = exc.history, exc.params
        if params["b"].ndim == 2:            # a population: its member with the lowest recent loss
            recent = history["loss"][-10:]
            params = {k: v[int(np.argmin(recent.mean(axis=0))) if len(recent) else 0] for k, v in params.items()}
            history = {k: v if v.ndim == 1 else v.min(axis=1) for k, v in history.items()}
        return {"params": params, "history": history, "curve_loss": [], "curve_beta": [], "first": 0,
                "second": 0, "diverged": exc.step}
    return {"params": params, "history": history, "curve_loss": curve_loss, "curve_beta": curve_beta,
            "first": first, "second": second, "diverged": None}


def train_candidates(job, target, rng, progress):
    """A population of candidates, then (``keep``) the best few trained on; the best of them, with
    its curve so far (loss, β)."""
    first = job["population_steps"]
    second = job["keep_steps"] if job["keep"] else 0
    warnings.filterwarnings("ignore", category=FitWarning)      # (its members are ranked anyway)
    members, pop = fit(target, job["K"], first, job["population_batch"], lr=job["population_lr"],
                       lr_final=job["population_lr_final"], anneal_steps=job["population_anneal_steps"],
                       rng=rng, progress=False, population=job["population"], callback=progress.stage(0),
                       engine=job["engine"])
    ranked = np.argsort(pop["loss"][-max(1, first // 10):].mean(axis=0), kind="stable")
    if not second:
        best = int(ranked[0])
        return {k: v[best] for k, v in members.items()}, [pop["loss"][:, best]], [pop["beta"]]
    kept = ranked[:job["keep"]]                  # the best few train on (a good basin may be slow)
    members, pop2 = fit(target, job["K"], second, job.get("keep_batch", job["population_batch"]),
                        lr=job["keep_lr"], lr_final=job["keep_lr_final"], rng=rng, progress=False,
                        population=len(kept), params={k: v[kept] for k, v in members.items()},
                        callback=progress.stage(first), engine=job["engine"])
    best = int(np.argmin(pop2["loss"][-max(1, second // 10):].mean(axis=0)))
    return ({k: v[best] for k, v in members.items()}, [pop["loss"][:, kept[best]], pop2["loss"][:, best]],
            [pop["beta"], pop2["beta"]])


def score_job(job, target, rng, fitted, seconds):
    """The fitted flow's scores: exact KL ± standard error, ESS/n and k̂, its density on the grid."""
    params, history, diverged = fitted["params"], fitted["history"], fitted["diverged"]
    first, second = fitted["first"], fitted["second"]
    log_z = log_partition(target)
    kl, stderr = kl_divergence(params, target, job["kl_samples"], rng, log_z=log_z)
    _, ess, k_hat = importance_log_z(params, target, job["kl_samples"], rng, return_k_hat=True)
    result = {"name": job["name"], "K": job["K"], "params": params, "history": history,
              "curve": {"loss": np.concatenate(fitted["curve_loss"] + [history["loss"]]),
                        "beta": np.concatenate(fitted["curve_beta"] + [history["beta"]]),
                        "switch": first + second if job["population"] and diverged is None else None,
                        "kept": first if second else None},
              "seconds": seconds, "log_z": log_z, "kl": kl, "stderr": stderr, "ess": ess, "k_hat": k_hat,
              "diverged": diverged, "recipe": job["recipe"], "seed": job["seed"][0],
              "density": flow_density_on_grid(params, 4.0, job["grid_n"])}
    if job.get("layers"):
        result["layer_densities"] = [flow_density_on_grid(params, 4.0, job["layers_grid_n"], layers=k)
                                     for k in range(job["K"] + 1)]
    return result


class WorkerFailed(RuntimeError):
    """A job failed in a worker process, or the process died (killed by the system, say)."""

    def __init__(self, message, job=None):
        super().__init__(message)
        self.job = job

    def __reduce__(self):
        return type(self), (str(self), self.job)


def _worker(tasks, messages, parent):
    """A worker process: run jobs from ``tasks`` until told to stop, reporting on ``messages``.

    Ctrl-C is the parent's to handle (it stops the workers), and a worker whose parent has gone
    exits at its next progress report, so none is left running alone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def report(i):
        def send(msg):
            if os.getppid() != parent:
                os._exit(1)
            messages.put(("progress", i, msg))
        return send

    while True:
        try:
            i, job = tasks.get(timeout=1.0)
        except queue_module.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        messages.put(("start", i, os.getpid()))
        try:
            messages.put(("done", i, run_job(job, report=report(i))))
        except BaseException as exc:          # sent as text: any exception crosses intact
            messages.put(("error", i, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def run_jobs(jobs, workers=2, progress=True, on_result=None):
    """Run jobs on ``workers`` processes (1: in this process); results in the order of ``jobs``.

    Workers are started with the "spawn" method and single-threaded BLAS (each fit is
    sequential; two BLAS thread pools per core would only compete), and take the longest jobs
    first. A status line is printed every few seconds. ``on_result(result)``, if given, is
    called in this process as soon as each job's result arrives (the demo draws its
    layer-by-layer pictures there while the other fits run).

    Nothing can make this wait for ever: a job that raises in a worker raises WorkerFailed here
    with the worker's message and traceback; a worker that dies (killed by the system, say) is
    noticed within a fraction of a second and named with its job; on any error or Ctrl-C the
    workers are stopped before this returns.
    """
    status = Status(len(jobs), progress)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job, report=status.note))
            if on_result is not None:
                on_result(results[-1])
        status.close()
        return results
    with Workers(jobs, min(workers, len(jobs)), status) as pool:
        pool.start()
        return pool.collect(on_result)


class Status:
    """run_jobs' status line: each job's latest step, shown every few seconds."""

    def __init__(self, n_jobs, progress):
        self.report, self.n_jobs, self.jobs = Progress(enabled=progress), n_jobs, {}

    def note(self, msg):
        label, t, n, loss = msg
        self.jobs[label] = (t, n, loss)
        self.show()

    def show(self, force=False):
        running = ", ".join(f"{lab} {t}/{n}" for lab, (t, n, _) in sorted(self.jobs.items()) if t < n)
        finished = sum(1 for t, n, _ in self.jobs.values() if t >= n)
        self.report.update(f"[{self.report.elapsed():5.1f} s] fits finished {finished}/{self.n_jobs}"
                           + (f"; running {running}" if running else ""), force=force)

    def close(self):
        self.report.close()


BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Workers:
    """Worker processes that run jobs, longest first; ``with Workers(...) as pool`` always stops
    them and puts the environment back, whatever happens inside."""

    def __init__(self, jobs, n_workers, status):
        self.jobs, self.n_workers, self.status = jobs, n_workers, status
        self.order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))     # the longest first
        self.procs, self.queues, self.saved = [], [], None
        self.results, self.running, self.dead_since = {}, {}, {}              # running: pid -> job index

    def __enter__(self):
        return self

    def start(self):
        self.saved = {k: os.environ.get(k) for k in BLAS_THREADS}
        os.environ.update({k: "1" for k in BLAS_THREADS})            # inherited by the spawned workers
        ctx = multiprocessing.get_context("spawn")
        self.tasks, self.messages = ctx.Queue(), ctx.Queue()
        self.queues = [self.tasks, self.messages]
        for i in self.order:
            self.tasks.put((i, self.jobs[i]))
        for _ in range(self.n_workers):
            self.tasks.put((None, None))
        self.procs = [ctx.Process(target=_worker, args=(self.tasks, self.messages, os.getpid()), daemon=True)
                      for _ in range(self.n_workers)]
        for p in self.procs:
            p.start()

    def collect(self, on_result):
        """Every job's result, in the order of the jobs, handing each to on_result as it comes."""
        while len(self.results) < len(self.jobs):
            try:
                msg = self.messages.get(timeout=0.2)
            except queue_module.Empty:
                msg = None
            if msg is not None:
                self.receive(msg, on_result)
            self.check_alive(msg)
            if msg is None:
                self.status.show()
        return [self.results[i] for i in range(len(self.jobs))]

    def receive(self, msg, on_result):
        kind, i = msg[0], msg[1]
        if kind == "start":
            self.running[msg[2]] = i
        elif kind == "progress":
            self.status.note(msg[2])
        elif kind == "error":
            raise WorkerFailed(f"{_label(self.jobs[i])} failed in a worker process: {msg[2]}\n"
                               f"--- the worker's traceback ---\n{msg[3]}", _label(self.jobs[i]))
        else:
            self.results[i] = msg[2]
            self.running = {pid: j for pid, j in self.running.items() if j != i}
            if on_result is not None:
                on_result(self.results[i])

    def check_alive(self, msg):
        """A worker that died with its job unfinished: give its pipe a second to deliver, then say so."""
        for p in self.procs:
            if p.pid in self.running and p.exitcode not in (None, 0):
                since = self.dead_since.setdefault(p.pid, time.perf_counter())
                if time.perf_counter() - since > 1.0:
                    code, i = p.exitcode, self.running[p.pid]
                    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                    raise WorkerFailed(f"the worker process running {_label(self.jobs[i])} died ({how}; "
                                       f"out of memory?) before finishing it", _label(self.jobs[i]))
        if msg is None and not any(p.is_alive() for p in self.procs):       # all gone, jobs left over
            since = self.dead_since.setdefault("all", time.perf_counter())
            if time.perf_counter() - since > 1.0:
                left = [_label(self.jobs[i]) for i in self.order if i not in self.results]
                raise WorkerFailed(f"the worker processes ended (exit codes {[p.exitcode for p in self.procs]}) "
                                   f"with {len(left)} jobs unfinished: {', '.join(left)}", left[0])

    def __exit__(self, *exc):
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            if p.pid is not None:             # (a process whose start failed cannot be joined)
                p.join(timeout=5)
        for q in self.queues:
            q.cancel_join_thread()
            q.close()
        for k, v in (self.saved or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.status.close()
        return False


def _label(job):
    return job.get("label") or f"{job['name']} K={job['K']}"


