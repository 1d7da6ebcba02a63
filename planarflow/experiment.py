"""The Figure 3 experiment: fit every (target, K) pair, score each fit, in parallel.

``demo.py`` is a thin command line over this module. A job is one (target, K) fit with its
settings; ``run_job`` trains it with ``fit`` and scores it (exact KL with its standard error,
importance-sampling ESS, the density on the plotting grid); ``run_jobs`` runs many jobs on
several processes — the fits are independent — and reports progress as they go.
"""

import multiprocessing
import os
import queue as queue_module
import time

import numpy as np

from .diagnostics import importance_log_z, kl_divergence, log_partition
from .plotting import flow_density_on_grid, target_density_on_grid
from .progress import Progress
from .targets import get_target
from .train import fit

TARGETS = ("U1", "U2", "U3", "U4")
KS = (2, 8, 32)


def recipe(K, steps=None, batch_size=None, lr=None):
    """Training settings for a K-layer flow in the demo; arguments given override the recipe.

    Adam from lr = 1e-2 with a cosine decay to lr/30 (the last steps average out the gradient
    noise), β annealed from 0.01 to 1 over the first third of the steps (so the flow spreads
    over every mode of U1 before it commits), batches of 1024.
    """
    steps = 6000 if steps is None else steps
    lr = 1e-2 if lr is None else lr
    return {"steps": steps, "batch_size": 1024 if batch_size is None else batch_size,
            "lr": lr, "lr_final": lr / 30.0, "anneal_steps": max(1, steps // 3)}


def make_jobs(targets=TARGETS, Ks=KS, seed=0, steps=None, batch_size=None, lr=None,
              grid_n=200, kl_samples=100_000, box=4.0, wall=0.2):
    """One job per (target, K); each gets its own seed, derived from (seed, target, K)."""
    jobs = []
    for K in Ks:
        for name in targets:
            job = dict(recipe(K, steps, batch_size, lr), name=name, K=K, box=box, wall=wall,
                       seed=[seed, TARGETS.index(name) if name in TARGETS else 99, K],
                       grid_n=grid_n, kl_samples=kl_samples)
            jobs.append(job)
    return jobs


_queue = None        # a worker's channel for progress reports (set by _init_worker)


def _init_worker(q):
    global _queue
    _queue = q


def run_job(job, report=None):
    """Fit one (target, K) and score it; returns a dict of plain arrays and numbers."""
    target = get_target(job["name"], box=job["box"], wall=job["wall"])
    rng = np.random.default_rng(job["seed"])
    label = f"{job['name']} K={job['K']}"
    report = report or (_queue.put if _queue is not None else None)
    last = [0.0]

    def callback(t, loss, beta):
        now = time.perf_counter()
        if report is not None and (now - last[0] > 0.5 or t + 1 == job["steps"]):
            last[0] = now
            report((label, t + 1, job["steps"], loss))

    start = time.perf_counter()
    params, history = fit(target, job["K"], job["steps"], job["batch_size"], lr=job["lr"],
                          lr_final=job["lr_final"], anneal_steps=job["anneal_steps"], rng=rng,
                          progress=False, callback=callback)
    seconds = time.perf_counter() - start
    log_z = log_partition(target)
    kl, stderr = kl_divergence(params, target, job["kl_samples"], rng, log_z=log_z)
    _, ess = importance_log_z(params, target, job["kl_samples"], rng)
    return {"name": job["name"], "K": job["K"], "params": params, "history": history,
            "seconds": seconds, "log_z": log_z, "kl": kl, "stderr": stderr, "ess": ess,
            "density": flow_density_on_grid(params, 4.0, job["grid_n"])}


def run_jobs(jobs, workers=2, progress=True):
    """Run jobs on ``workers`` processes (1: in this process); results in the order of ``jobs``.

    Workers are started with the "spawn" method and single-threaded BLAS (each fit is
    sequential; two BLAS thread pools per core would only compete). A status line is printed
    every few seconds.
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
        results = [run_job(job, report=note) for job in jobs]
        report.close()
        return results

    # cost-ordered submission (the longest fits first) keeps both workers busy to the end
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i]["steps"] * (jobs[i]["K"] + 4) * jobs[i]["batch_size"])
    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update({k: "1" for k in env_keys})            # inherited by the spawned workers
    try:
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        with ctx.Pool(processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(q,)) as pool:
            pending = {i: pool.apply_async(run_job, (jobs[i],)) for i in order}
            results = {}
            while pending:
                try:
                    while True:
                        note(q.get(timeout=0.2))
                except queue_module.Empty:
                    pass
                for i in [i for i, r in pending.items() if r.ready()]:
                    results[i] = pending.pop(i).get()
                show()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report.close()
    return [results[i] for i in range(len(jobs))]


def true_densities(names, box=4.0, wall=0.2, grid_n=200):
    """exp(−U)/Z on the plotting grid for each target name (Z by quadrature)."""
    out = {}
    for name in names:
        target = get_target(name, box=box, wall=wall)
        out[name] = target_density_on_grid(target, log_partition(target), 4.0, grid_n)
    return out
