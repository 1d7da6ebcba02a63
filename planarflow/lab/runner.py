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
    label = _label(job)
    first = job["population_steps"] if job["population"] else 0
    second = job["keep_steps"] if job["keep"] else 0
    total = first + second + job["steps"]
    last = [0.0]

    def progress(offset):
        def callback(t, loss, beta):
            now = time.perf_counter()
            if report is not None and (now - last[0] > 0.5 or offset + t + 1 == total):
                last[0] = now
                report((label, offset + t + 1, total, np.min(loss)))
        return callback

    start = time.perf_counter()
    params, curve_loss, curve_beta, diverged = None, [], [], None
    if job.get("start") == "uniform":
        params = uniform_start(job["K"], rng)
    try:
        if job["population"]:                # shallow flows: keep the best of a population
            warnings.filterwarnings("ignore", category=FitWarning)      # (its members are ranked anyway)
            members, pop = fit(target, job["K"], first, job["population_batch"], lr=job["population_lr"],
                               lr_final=job["population_lr_final"],
                               anneal_steps=job["population_anneal_steps"], rng=rng, progress=False,
                               population=job["population"], callback=progress(0), engine=job["engine"])
            ranked = np.argsort(pop["loss"][-max(1, first // 10):].mean(axis=0), kind="stable")
            if second:                       # the best few train on (a good basin may be slow)
                kept = ranked[:job["keep"]]
                members, pop2 = fit(target, job["K"], second, job.get("keep_batch", job["population_batch"]), lr=job["keep_lr"],
                                    lr_final=job["keep_lr_final"], rng=rng, progress=False,
                                    population=len(kept), params={k: v[kept] for k, v in members.items()},
                                    callback=progress(first), engine=job["engine"])
                best = int(np.argmin(pop2["loss"][-max(1, second // 10):].mean(axis=0)))
                curve_loss = [pop["loss"][:, kept[best]], pop2["loss"][:, best]]
                curve_beta = [pop["beta"], pop2["beta"]]
            else:
                best = int(ranked[0])
                curve_loss, curve_beta = [pop["loss"][:, best]], [pop["beta"]]
            params = {k: v[best] for k, v in members.items()}
        params, history = fit(target, job["K"], job["steps"], job["batch_size"], lr=job["lr"],
                              lr_final=job["lr_final"], anneal_steps=job["anneal_steps"], rng=rng,
                              params=params, progress=False, callback=progress(first + second),
                              engine=job["engine"], gradient=job.get("gradient", "full"),
                              keep_best=job.get("keep_best", True))
    except TrainingDiverged as exc:          # score the last valid parameters, and say so
        diverged, history, params = exc.step, exc.history, exc.params
        if params["b"].ndim == 2:            # a population: its member with the lowest recent loss
            recent = history["loss"][-10:]
            params = {k: v[int(np.argmin(recent.mean(axis=0))) if len(recent) else 0] for k, v in params.items()}
            history = {k: v if v.ndim == 1 else v.min(axis=1) for k, v in history.items()}
        curve_loss, curve_beta, first, second = [], [], 0, 0
    seconds = time.perf_counter() - start
    log_z = log_partition(target)
    kl, stderr = kl_divergence(params, target, job["kl_samples"], rng, log_z=log_z)
    _, ess, k_hat = importance_log_z(params, target, job["kl_samples"], rng, return_k_hat=True)
    result = {"name": job["name"], "K": job["K"], "params": params, "history": history,
              "curve": {"loss": np.concatenate(curve_loss + [history["loss"]]),
                        "beta": np.concatenate(curve_beta + [history["beta"]]),
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
    report = Progress(enabled=progress)
    status = {}

    def show(force=False):
        running = ", ".join(f"{lab} {t}/{n}" for lab, (t, n, _) in sorted(status.items()) if t < n)
        finished = sum(1 for t, n, _ in status.values() if t >= n)
        report.update(f"[{report.elapsed():5.1f} s] fits finished {finished}/{len(jobs)}"
                      + (f"; running {running}" if running else ""), force=force)

    def note(msg):
        label, t, n, loss = msg
        status[label] = (t, n, loss)
        show()

    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job, report=note))
            if on_result is not None:
                on_result(results[-1])
        report.close()
        return results

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))     # the longest first
    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update({k: "1" for k in env_keys})            # inherited by the spawned workers
    ctx = multiprocessing.get_context("spawn")
    tasks, messages = ctx.Queue(), ctx.Queue()
    procs = []
    try:
        for i in order:
            tasks.put((i, jobs[i]))
        n_workers = min(workers, len(jobs))
        for _ in range(n_workers):
            tasks.put((None, None))
        procs = [ctx.Process(target=_worker, args=(tasks, messages, os.getpid()), daemon=True)
                 for _ in range(n_workers)]
        for p in procs:
            p.start()
        results, running, dead_since = {}, {}, {}              # running: pid -> job index
        while len(results) < len(jobs):
            try:
                msg = messages.get(timeout=0.2)
            except queue_module.Empty:
                msg = None
            if msg is not None and msg[0] == "start":
                running[msg[2]] = msg[1]
            elif msg is not None and msg[0] == "progress":
                note(msg[2])
            elif msg is not None and msg[0] == "error":
                i = msg[1]
                raise WorkerFailed(f"{_label(jobs[i])} failed in a worker process: {msg[2]}\n"
                                   f"--- the worker's traceback ---\n{msg[3]}", _label(jobs[i]))
            elif msg is not None:
                i = msg[1]
                results[i] = msg[2]
                running = {pid: j for pid, j in running.items() if j != i}
                if on_result is not None:
                    on_result(results[i])
            for p in procs:                   # a worker that died with its job unfinished: give
                if p.pid in running and p.exitcode not in (None, 0):     # its pipe a second to
                    since = dead_since.setdefault(p.pid, time.perf_counter())   # deliver, then say so
                    if time.perf_counter() - since > 1.0:
                        code, i = p.exitcode, running[p.pid]
                        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                        raise WorkerFailed(f"the worker process running {_label(jobs[i])} died ({how}; "
                                           f"out of memory?) before finishing it", _label(jobs[i]))
            if msg is None and not any(p.is_alive() for p in procs):   # all gone, jobs left over
                since = dead_since.setdefault("all", time.perf_counter())
                if time.perf_counter() - since > 1.0:
                    left = [_label(jobs[i]) for i in order if i not in results]
                    raise WorkerFailed(f"the worker processes ended (exit codes {[p.exitcode for p in procs]}) "
                                       f"with {len(left)} jobs unfinished: {', '.join(left)}", left[0])
            if msg is None:
                show()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            if p.pid is not None:             # (a process whose start failed cannot be joined)
                p.join(timeout=5)
        for q in (tasks, messages):
            q.cancel_join_thread()
            q.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        report.close()
    return [results[i] for i in range(len(jobs))]


def _label(job):
    return job.get("label") or f"{job['name']} K={job['K']}"


