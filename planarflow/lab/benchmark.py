"""Timings: the training step for K × batch size, both engines, how the cost grows with K, the
batch and the dimension d, the step against a jitted JAX step (when JAX is installed), and the
demo end to end.

    python -m planarflow benchmark                 # every section below; each prints its numbers
    python -m planarflow benchmark --no-demo       # the step timings only
    python -m planarflow benchmark --posteriors    # real posteriors against their exact answers
    python -m planarflow benchmark --placement     # where the learnable base goes, measured
    python -m planarflow benchmark --versus-nuts   # eight posteriors: planarflow and NumPyro's NUTS
    python -m planarflow benchmark --stopping      # when stopping early would be wrong; BLAS threads

One training step is what ``fit`` does each step: draw the noise, compute the loss and its
gradient, and take an Adam step. It is timed inside ``fit`` through its callback (time between
consecutive steps), in float64 with single-threaded BLAS; the median over the steps after a
warm-up is reported (and the 10th percentile, since virtual machines are noisy). The demo is run
as a separate process, once with its default engine and once with ``--engine reference``; its
wall time and the peak resident memory of its process tree (itself and its workers) are
reported. Timings are measurements of this machine, never assertions: tests do not time anything.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from . import peer_jax
from ..library.progress import say

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _single_threaded_blas(argv):
    """Re-run this command with single-threaded BLAS if the environment does not ask for it."""
    if all(os.environ.get(k) == "1" for k in BLAS_THREADS):
        return
    env = dict(os.environ, **{k: "1" for k in BLAS_THREADS})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "planarflow", "benchmark"] + list(argv), env)


def step_times(K, batch_size, steps=300, warmup=30, population=None, engine="fused", target=None, dim=None,
               gradient="full"):
    """Per-step wall times (seconds) of fit (on U4 unless a target is given; the flow at N(0, I),
    no learnable base), after a warm-up."""
    from ..library.api import get_target
    from ..library.training import fit

    stamps = []
    fit(target or get_target("U4"), K, steps + warmup, batch_size, lr=1e-2, rng=0, progress=False,
        population=population, engine=engine, dim=dim, gradient=gradient, start="standard",
        callback=lambda t, loss, beta: stamps.append(time.perf_counter()))
    return np.diff(stamps)[warmup - 1:]


def cost_formula(coef):
    """α + β·K + γ·(batch/1000) + δ·K·(batch/1000) as text, each term with its own sign (a
    coefficient fitted to noisy medians can come out slightly negative)."""
    terms = [(coef[1], 4, "·K"), (coef[2], 3, "·(batch/1000)"), (coef[3], 4, "·K·(batch/1000)")]
    return f"{coef[0]:.3f}" + "".join(f" {'−' if c < 0 else '+'} {abs(c):.{n}f}{name}" for c, n, name in terms)


def machine_noise(repeats=2000):
    """Wall times (seconds) of one fixed call, np.exp on 1024 numbers, repeated: a virtual
    machine's speed drifts (its host is shared), and this shows by how much while we measure."""
    x = np.linspace(-3.0, 3.0, 1024)
    out = np.empty_like(x)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        np.exp(x, out=out)
        times[i] = time.perf_counter() - start
    return times


def _tree_rss_kb(root_pid):
    """Summed VmRSS (kB) of a process and its descendants, from /proc (Linux)."""
    children, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/status") as f:
                kb = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = kb
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def demo_run(root, *flags):
    """Wall time (s) and peak summed RSS (MB) of `python demo.py [flags]` run from ``root``."""
    out = os.path.join(root, "out", "benchmark_figure3.png")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "demo.py", "--out", out, *flags], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        if sys.platform.startswith("linux"):
            peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"demo.py {' '.join(flags)} failed with status {proc.returncode}")
    return seconds, peak / 1024.0


def gradient_variance(names=("U2", "U3"), batches=200):
    """For each target: a K = 32 flow fitted with the demo's recipe, then both estimators on 200
    fresh batches of 1024 at those parameters; (name, full/path, total variance of each)."""
    from .. import fused
    from ..library.api import get_target
    from .recipes import recipe
    from ..library.training import fit
    from ..library.validation import CheckedTarget

    rows = []
    for name in names:
        rec = recipe(32)
        target = get_target(name)
        params, _ = fit(target, 32, rec["steps"], rec["batch_size"], lr=rec["lr"], lr_final=rec["lr_final"],
                        anneal_steps=rec["anneal_steps"], rng=0, progress=False, engine="fused", gradient="path")
        members = {k: v[None] for k, v in params.items()}
        rng = np.random.default_rng(1)
        checked = CheckedTarget(target, 2)
        totals = []
        for gradient in ("full", "path"):
            grads = [np.concatenate([g.ravel() for g in fused.reverse_kl_members(
                members, rng.standard_normal((1, 1024, 2)), checked, 1.0, gradient=gradient)[1].values()])
                for _ in range(batches)]
            totals.append(float(np.var(np.array(grads), axis=0, ddof=1).sum()))
        rows.append((name, totals[0] / totals[1], *totals))
    return rows


def base_placement(seeds=(0, 1)):
    """Where the learnable base goes, measured: docs/researchers.md's call on two real posteriors with the
    base after the planar layers (planarflow's) and before them (the paper's q₀ = N(μ, AAᵀ),
    swapped into base.flow_forward/flow_backward for the run). Returns rows
    (placement, posterior, seed, final loss, k̂, mean error in sds, sd error)."""
    import contextlib
    import warnings

    from .. import base, reference
    from ..library.api import posterior
    from ..library.training import fit
    from .posteriors import eight_schools, judge, regression

    def forward_before(params, z0):
        z, logdet, base_cache = base.base_forward(z0, params["mu"], params["log_sigma"], params["lower"])
        zK, sum_logdet, caches = reference.flow_forward(params, z)
        return zK, sum_logdet + logdet, (caches, base_cache)

    def backward_before(dzK, dsum_logdet, caches):
        caches, base_cache = caches
        dz, grads = reference.flow_backward(dzK, dsum_logdet, caches)
        dz, grads["mu"], grads["log_sigma"], grads["lower"] = base.base_backward(dz, dsum_logdet, base_cache)
        return dz, grads

    @contextlib.contextmanager
    def placed(where):
        saved = base.flow_forward, base.flow_backward
        if where == "before":
            base.flow_forward, base.flow_backward = forward_before, backward_before
        try:
            yield
        finally:
            base.flow_forward, base.flow_backward = saved

    rows = []
    cases = [("eight schools", *eight_schools()), ("dollars", *regression("dollars")[:3])]
    for where in ("after", "before"):
        for name, target, mean, sd in cases:
            for seed in seeds:
                with placed(where), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    params, history = fit(target, 16, 3000, 512, anneal_steps=1000, rng=seed, progress=False)
                    post = posterior(params, target, 20_000, rng=1)
                rows.append((where, name, seed, float(history["loss"][-100:].mean()), post.k_hat, *judge(post, mean, sd)))
    return rows


def posterior_table():
    """docs/researchers.md's call and posterior estimate on real posteriors with exact answers, with a
    hand gradient and with the energy alone: seconds, errors against the truth, k̂. Prints rows."""
    import warnings

    from ..library.api import posterior, sample
    from .posteriors import eight_schools, judge, regression
    from ..library.training import fit

    say("fit(target, 16, 3000, 512, rng=0), then posterior(params, target, 20 000):")
    say("errors against the exact posterior — means in posterior sds, sds relative — for the")
    say("reweighted estimate and, in brackets, for the flow's draws as they are")
    say("  posterior              gradient     fit (s)  steps     k̂   mean error        sd error")
    for energy_only in (False, True):
        cases = [("eight schools", *eight_schools(energy_only=energy_only))]
        cases += [(f"regression, {c}", *regression(c, energy_only=energy_only)[:3])
                  for c in ("dollars", "uncentred", "tight")]
        for name, target, mean, sd in cases:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, history = fit(target, 16, 3000, 512, rng=0, progress=False)
                seconds = time.perf_counter() - start
                post = posterior(params, target, 20_000, rng=1)
            raw = sample(params, 20_000, rng=1)[0]
            dm, ds = judge(post, mean, sd)
            rm, rs = np.max(np.abs(raw.mean(axis=0) - mean) / sd), np.max(np.abs(raw.std(axis=0) / sd - 1))
            say(f"  {name:22} {'differences' if energy_only else 'by hand':11} {seconds:8.1f}  "
                f"{int(history['steps_taken']):5d}  {post.k_hat:5.2f}"
                  f"   {dm:.3f} ({rm:.3f})   {ds:.3f} ({rs:.3f})")


def _at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m planarflow benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-demo", action="store_true", help="skip the end-to-end demo run")
    parser.add_argument("--steps", type=_at_least(10), help="timed steps per configuration (at least 10; default 300)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--placement", action="store_true",
                      help="only the measurement of where the learnable base goes")
    only.add_argument("--posteriors", action="store_true",
                      help="only the real posteriors against their exact answers")
    only.add_argument("--versus-nuts", action="store_true",
                      help="only eight posteriors, planarflow's call against NumPyro's NUTS (needs .[compare])")
    only.add_argument("--stopping", action="store_true",
                      help="only where stopping at convergence would be wrong, and BLAS threads under load")
    only.add_argument("--tails", action="store_true",
                      help="only posterior's tail check: on posteriors whose tails hide from k̂, and on the eight")
    only.add_argument("--energy-only", action="store_true",
                      help="only fits of an energy without a gradient: along coordinates, along directions")
    args = parser.parse_args(argv)
    only_one = next((f for f in ("placement", "posteriors", "versus_nuts", "stopping", "tails", "energy_only")
                     if getattr(args, f)), None)
    if only_one and (args.no_demo or args.steps is not None):
        parser.error(f"{'--no-demo' if args.no_demo else '--steps'}: only for the step timings; "
                     f"--{only_one.replace('_', '-')} runs fits of its own")
    args.steps = 300 if args.steps is None else args.steps
    began = time.perf_counter()
    if args.posteriors:
        _single_threaded_blas(sys.argv[1:] if argv is None else argv)
        posterior_table()
        say(f"({time.perf_counter() - began:.0f} s in all)")
        return
    if only_one:                                     # as a researcher runs them (fit sets its threads)
        {"placement": print_placement, "versus_nuts": print_versus_nuts, "stopping": print_stopping,
         "tails": print_tails, "energy_only": print_energy_only}[only_one]()
        say(f"({time.perf_counter() - began:.0f} s in all)")
        return
    _single_threaded_blas(sys.argv[1:] if argv is None else argv)
    rounds = 3
    print_step_grid(args.steps, rounds)
    print_populations(args.steps, rounds)
    print_engines(args.steps)
    print_path_gradient(args.steps)
    print_peer(args.steps)
    if not args.no_demo:
        print_demo()


RIGHT = 0.1        # a right answer: every mean within 0.1 posterior sd, every sd within 10%, k̂ ≤ 0.7


def print_versus_nuts(seeds=(0, 1, 2)):
    """planarflow's call on the eight posteriors of lab/posteriors.py — fit and posterior estimate,
    timed together — against NumPyro's NUTS timed from its call to its draws; each judged against
    the posterior's independent truth."""
    import warnings

    from ..library.api import posterior
    from ..library.training import fit
    from . import peer_nuts
    from .posteriors import benchmark_set, judge

    say("Time to a right answer (every mean within 0.1 posterior sd of the truth, every sd within 10%,")
    say("and for planarflow k̂ ≤ 0.7), seconds; planarflow: fit(target, 16, 3000, 512, rng=seed), then")
    say("posterior(params, target, 20 000) — as called (the fused engine, fit's default for your target),")
    say("and with engine=\"reference\" (the lesson's code); NUTS: NumPyro, 4 chains × (1000 warm-up +")
    say("1000 draws) from the origin, one after another, compilation included.")
    say(f"  {'posterior':26} {'d':>3}  {'as called, seeds ' + ','.join(map(str, seeds)):>22}  "
        f"{'steps taken':>16}  {'engine=reference':>22}  {'NUTS':>12}")
    totals = {"fused": [], "reference": [], "nuts": []}
    for name, target, mean, sd in benchmark_set():
        cells = {}
        for engine in ("fused", "reference"):
            cells[engine] = []
            for seed in seeds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    params, history = fit(target, 16, 3000, 512, rng=seed, progress=False,
                                          **({} if engine == "fused" else {"engine": engine}))
                    post = posterior(params, target, 20_000, rng=seed + 10)
                    seconds = time.perf_counter() - start
                dm, ds = judge(post, mean, sd)
                right = dm <= RIGHT and ds <= RIGHT and post.k_hat <= 0.7
                cells[engine].append((seconds, right, int(history["steps_taken"])))
                totals[engine].append((seconds, right))
        if peer_nuts.available():
            seconds, draws = peer_nuts.nuts(target, seed=0)
            right = (np.max(np.abs(draws.mean(axis=0) - mean) / sd) <= RIGHT
                     and np.max(np.abs(draws.std(axis=0) / sd - 1)) <= RIGHT)
            totals["nuts"].append((seconds, right))
            nuts_cell = f"{seconds:7.1f} {'ok' if right else 'WRONG':>5}"
        else:
            nuts_cell = f"{'—':>12}"

        def row(cs):
            return " ".join(f"{t:5.1f}{'' if ok else '!'}" for t, ok, _ in cs)

        say(f"  {name:26} {target.dim:3d}  {row(cells['fused']):>22}  "
            f"{','.join(str(n) for _, _, n in cells['fused']):>16}  {row(cells['reference']):>22}  {nuts_cell}")
    for engine, what in (("fused", "as called"), ("reference", "engine=reference"), ("nuts", "NUTS")):
        if totals[engine]:
            t = np.array([x for x, _ in totals[engine]])
            say(f"  {what:>16}: right in {sum(ok for _, ok in totals[engine])} of {len(t)}, median {np.median(t):.1f} s, "
                f"longest {t.max():.1f} s")
    if totals["nuts"]:
        per = np.array([x for x, _ in totals["nuts"]])
        for engine in ("fused", "reference"):
            mine = np.array([x for x, _ in totals[engine]]).reshape(len(per), -1).max(axis=1)
            say(f"  {'as called' if engine == 'fused' else 'engine=reference'}, the slowest seed over NUTS, per posterior: "
                + ", ".join(f"{r:.2f}" for r in mine / per) + f" (at most {np.max(mine / per):.2f})")
    if not peer_nuts.available():
        say("  (NumPyro is not installed here: pip install -e .[compare] adds it, for this comparison only)")
    say("  (! marks a run that is not right; steps taken: where each run as called stopped, converged)")


def print_stopping():
    """Where stopping at convergence would be wrong: the paper's targets (non-convex, slow, with
    plateaus) stopped against the same run taken to 6000 steps; a slow drift; an anneal not over;
    and a fit's BLAS threads on a busy machine."""
    import subprocess
    import warnings

    from ..library.api import get_target, kl_divergence
    from ..library.training import fit
    from .posteriors import benchmark_set

    say("stop=\"converged\" against the same run to the end (6000 steps), the paper's targets,")
    say("fused engine, batch 512, β annealed over 1000 steps, the path gradient; KL in nats (100 000 draws)")
    lost = []
    for name in ("U1", "U2", "U3", "U4"):
        target = get_target(name)
        for K in (8, 16):
            cells = []
            for seed in (0, 1, 2):
                kw = dict(rng=seed, progress=False, engine="fused", anneal_steps=1000, gradient="path")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    stopped, history = fit(target, K, 6000, 512, stop="converged", **kw)
                    full, _ = fit(target, K, 6000, 512, stop="steps", **kw)
                kl = [kl_divergence(p, target, 100_000, rng=5)[0] for p in (stopped, full)]
                lost.append(kl[0] - kl[1])
                cells.append(f"{int(history['steps_taken']):5d}: {kl[0]:.3f} vs {kl[1]:.3f}")
            say(f"  {name} K = {K:2d}   " + "   ".join(cells))
    lost = np.array(lost)
    say(f"  KL given up by stopping: median {np.median(lost):.4f}, more than 0.02 in {int((lost > 0.02).sum())} "
        f"of {lost.size} (a plateau that a late improvement ends: no rule on the loss can see it coming)")
    target = get_target("U1")
    for seed in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, history = fit(target, 8, 8000, 512, lr=1e-3, rng=seed, progress=False, engine="fused", stop="converged")
        say(f"  a slow drift (U1, K = 8, lr 1e-3), seed {seed}: ran {int(history['steps_taken'])} of 8000 steps")
    _, history = fit(target, 4, 3000, 256, anneal_steps=2400, rng=0, progress=False, engine="fused", stop="converged")
    say(f"  annealing over 2400 of 3000 steps: ran {int(history['steps_taken'])} (β = 1 from step "
        f"{int(np.argmax(history['beta'] == 1))}; the rule counts only steps at β = 1)")

    say("\nBLAS threads while a fit runs, the other core kept busy (fit(..., engine=\"fused\"), seconds):")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for name, target, _, _ in benchmark_set():
            if name not in ("regression, 10 predictors", "AR(5)", "logistic regression"):
                continue
            times = []
            for threads in (None, 1, None, 1):                  # interleaved, twice each
                start = time.perf_counter()
                fit(target, 16, 3000, 512, rng=0, progress=False, engine="fused", blas_threads=threads)
                times.append(time.perf_counter() - start)
            say(f"  {name:26} NumPy's default threads {min(times[0], times[2]):5.1f}, one thread (fit's default) "
                f"{min(times[1], times[3]):5.1f}")
    finally:
        busy.kill()


def print_tails(seeds=(0, 1, 2)):
    """posterior's tail check against the truth: does it flag the fits whose estimates are wrong
    while k̂ ≤ 0.7, and stay quiet on the right ones?"""
    import warnings

    from ..library.api import posterior
    from ..library.training import fit
    from .posteriors import benchmark_set, judge, tail_set

    say("fit(target, 16, 3000, 512, rng=seed), then posterior(params, target, 20 000): against the truth")
    say("(right: every mean within 0.1 sd, every sd within 10%), what k̂ and the tail check say")
    say(f"  {'posterior':26} {'seed':>4}  {'k̂':>5}  {'mean error':>10}  {'sd error':>8}  {'wide k̂':>6}  "
        f"{'largest sd change':>17}  verdict")
    tally = {}
    for name, target, mean, sd in tail_set() + benchmark_set():
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = fit(target, 16, 3000, 512, rng=seed, progress=False)
                post = posterior(params, target, 20_000, rng=seed + 10)
            dm, ds = judge(post, mean, sd)
            right = dm <= RIGHT and ds <= RIGHT
            said = "k̂ > 0.7" if not post.reliable else "TailWarning" if post.tails["flagged"] else "silent"
            verdict = ("right, " if right else "WRONG, ") + said
            tally[verdict] = tally.get(verdict, 0) + 1
            j = int(np.argmax(np.abs(post.tails["sd_change"])))
            say(f"  {name:26} {seed:4d}  {post.k_hat:5.2f}  {dm:10.3f}  {ds:8.3f}  {post.tails['wide'].k_hat:6.2f}  "
                f"{post.tails['sd_change'][j]:+16.1%}   {verdict}")
    say("  " + "; ".join(f"{k}: {v}" for k, v in sorted(tally.items())))


def print_energy_only(seeds=(0, 1, 2)):
    """Fits of an energy alone: differences along the coordinates (d + 1 energies a point) and
    along random directions around the Laplace quadratic, against the same posterior's fit with its
    gradient — time and accuracy."""
    import warnings

    from ..library import training
    from ..library.api import posterior
    from .posteriors import benchmark_set, judge, wide_regression

    say("fit(target, 16, 3000, 512, rng=seed) on an energy without a gradient, then posterior(…, 20 000):")
    say("seconds of the fit, and whether the estimate is right (every mean within 0.1 sd, every sd within")
    say("10%, k̂ ≤ 0.7; ! marks one that is not), by the gradient, and by differences along the d")
    say(f"coordinates and along {training.DIRECTIONS} random directions a point (fit's choice from d = "
        f"{training.DIRECTIONS_FROM} on)")
    say(f"  {'posterior':35} {'d':>3}  {'gradient':>18}  {'coordinates':>20}  {'directions':>20}")
    cases = [(name, with_grad) for name, with_grad, _, _ in benchmark_set()]
    energy_only = {name: (target, mean, sd) for name, target, mean, sd in benchmark_set(energy_only=True)}
    big = "regression, 24 predictors, N = 5000"
    cases.append((big, wide_regression(p=24, n=5000)[0]))
    energy_only[big] = wide_regression(p=24, n=5000, energy_only=True)
    for name, with_grad in cases:
        target, mean, sd = energy_only[name]
        cells = []
        for kind, t, kw in (("gradient", with_grad, {}), ("coordinates", target, {"differences": "coordinates"}),
                            ("directions", target, {"differences": "directions"})):
            row = []
            for seed in seeds[:1] if name == big and kind == "coordinates" else seeds:     # (minutes a fit)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    params, _ = training.fit(t, 16, 3000, 512, rng=seed, progress=False, **kw)
                    seconds = time.perf_counter() - start
                    post = posterior(params, t, 20_000, rng=seed + 10, tails=False)
                dm, ds = judge(post, mean, sd)
                row.append(f"{seconds:5.1f}{'' if dm <= RIGHT and ds <= RIGHT and post.reliable else '!'}")
            cells.append(" ".join(row))
        say(f"  {name:35} {target.dim:3d}  {cells[0]:>18}  {cells[1]:>20}  {cells[2]:>20}")
    say(f"  (the {big}: along the coordinates, seed {seeds[0]} only)")


def print_placement():
    say("The learnable base after the planar layers (planarflow) or before them (the paper's")
    say("q₀ = N(μ, AAᵀ)): fit(target, 16, 3000, 512, anneal_steps=1000), then posterior(…, 20 000)")
    say("  base    posterior       seed   final loss     k̂   mean error (sd)   sd error")
    for where, name, seed, loss, k_hat, dm, ds in base_placement():
        say(f"  {where:6}  {name:14}  {seed:4d}   {loss:10.4f}  {k_hat:5.2f}   {dm:15.3f}   {ds:8.3f}")



def print_step_grid(steps, rounds):
    """The step's time for K × batch size on the fused engine, and the cost formula fitted to it."""
    Ks, batches = (2, 8, 32), (256, 1024, 4096)
    say("One training step (noise + loss + gradient + Adam) on the fused engine, float64,")
    say("1 BLAS thread, target U4")
    say("median ms per step (10th percentile in brackets)\n")
    say("   K " + "".join(f"{f'batch {n}':>20}" for n in batches))
    # In interleaved rounds, every cell once a round: a slow spell of the (shared, virtual) host
    # then touches all cells alike, not the few measured during it. A cell's median is the median
    # of its rounds' medians; its 10th percentile is over all its steps.
    times = {(K, n): [] for K in Ks for n in batches}
    for _ in range(rounds):
        for K, n in times:
            times[K, n].append(step_times(K, n, steps=max(20, steps // rounds)) * 1e3)
    med = np.array([[np.median([np.median(t) for t in times[K, n]]) for n in batches] for K in Ks])
    for i, K in enumerate(Ks):
        cells = [f"{med[i, j]:9.3f} ({np.percentile(np.concatenate(times[K, n]), 10):6.3f})"
                 for j, n in enumerate(batches)]
        say(f"{K:4d} " + "".join(f"{c:>20}" for c in cells))

    # cost ≈ α + β·K + γ·batch + δ·K·batch, fitted by least squares to the nine medians
    KK, NN = np.meshgrid(np.array(Ks, float), np.array(batches, float), indexing="ij")
    A = np.column_stack([np.ones(KK.size), KK.ravel(), NN.ravel() / 1000, KK.ravel() * NN.ravel() / 1000])
    coef, *_ = np.linalg.lstsq(A, med.ravel(), rcond=None)
    say("\nHow the cost grows (least-squares fit to the medians above, ms):")
    say(f"  step ≈ {cost_formula(coef)}")
    say(f"  per layer at batch 1024: {coef[1] + 1.024 * coef[3]:.4f} ms;"
          f"  per 1000 samples at K = 32: {coef[2] + 32 * coef[3]:.3f} ms")
    say(f"  K = 32, batch 1024: {med[2, 1]:.3f} ms per step")
    t = step_times(32, 1024, steps=3 * steps) * 1e3
    say(f"  again, {3 * steps} steps: median {np.median(t):.3f}, 10th percentile "
          f"{np.percentile(t, 10):.3f}, fastest {t.min():.3f} ms")
    e = machine_noise() * 1e6
    say(f"  this machine's own noise: one fixed NumPy call (exp of 1024 numbers) took median "
          f"{np.median(e):.2f} µs, 10th percentile {np.percentile(e, 10):.2f}, 90th {np.percentile(e, 90):.2f}")


def print_populations(steps, rounds):
    """A population's step against as many single flows' steps."""
    say("\nA population (fit(..., population=P): P flows in one fused step, as the demo's recipe")
    say("trains K ≤ 16), P × 256 samples, against P separate steps of one flow at batch 256:")
    for K, P in ((2, 32), (2, 8), (8, 16)):            # each against a single flow measured beside it
        pop, one = np.array([[np.median(step_times(K, 256, steps=max(20, steps // 6), population=p))
                              for p in (P, None)] for _ in range(rounds)]).T * 1e3
        say(f"  K = {K}, P = {P}: {np.median(pop):.3f} ms per step = {np.median(pop / one):.1f} single steps "
              f"for {P} flows")


def print_engines(steps):
    """The two engines' steps against the dimension d."""
    from ..library.api import Gaussian

    say("\nThe two engines, K = 32, batch 1024, ms per step (median): the reference (reference.py,")
    say("fit's default) and the fused engine, against the dimension d (a standard Gaussian target):")
    say("      d   reference       fused   reference / fused")
    for d in (2, 8, 32, 100, 200):
        n = max(20, steps // (1 if d <= 8 else 10))
        target = Gaussian(np.zeros(d), np.ones(d))
        t_ref = np.median(step_times(32, 1024, steps=n, warmup=5, engine="reference", target=target)) * 1e3
        t_fused = np.median(step_times(32, 1024, steps=n, warmup=5, target=target)) * 1e3
        say(f"  {d:5d}   {t_ref:9.3f}   {t_fused:9.3f}   {t_ref / t_fused:17.1f}")


def print_path_gradient(steps):
    """The path-derivative gradient's cost and its variance near the optimum."""
    say("\nThe path-derivative gradient (path_gradient.py) on the fused engine, K = 32, batch 1024, U4:")
    t_full = step_times(32, 1024, steps=steps) * 1e3
    t_path = step_times(32, 1024, steps=steps, gradient="path") * 1e3
    say(f"  ms per step (median): full {np.median(t_full):.3f}, path {np.median(t_path):.3f} "
        f"({np.median(t_path) / np.median(t_full):.2f}× the full gradient's)")
    for name, ratio, full, path in gradient_variance():
        say(f"  {name}, at a flow fitted by the demo's K = 32 recipe: the gradient's variance over 200 "
            f"batches, summed over the parameters, {full:.3g} full, {path:.3g} path ({ratio:.0f}× lower)")


def print_peer(steps):
    """A jitted JAX step of the same flow, in interleaved rounds (when JAX is installed)."""
    say("\nAgainst a peer: a jitted JAX step of the same flow (float64, one thread, U4, Adam;")
    say("planarflow/lab/peer_jax.py), K = 32, batch 1024:")
    if peer_jax.available():
        say(f"  (the same loss: JAX's and reference.reverse_kl's differ by {peer_jax.agreement():.1e} at random parameters)")
        # Interleaved rounds of a few dozen steps each: the three measurements of a round lie within
        # a second or two, so the host's slow drifts in speed cancel in the round's ratios.
        peer_times, rounds, n = peer_jax.make_timer(32, 1024), 15, max(20, steps // 5)
        ms = np.array([[np.median(f()) * 1e3 for f in (
            lambda: peer_times(n),
            lambda: step_times(32, 1024, steps=n, warmup=10),
            lambda: step_times(32, 1024, steps=n, warmup=10, gradient="path"))] for _ in range(rounds)])
        full, path = ms[:, 1] / ms[:, 0], ms[:, 2] / ms[:, 0]
        say(f"  {rounds} interleaved rounds of {n} steps each, ms per step (median over the rounds):")
        say(f"  JAX {np.median(ms[:, 0]):.3f}, planarflow full gradient {np.median(ms[:, 1]):.3f}, "
            f"path gradient {np.median(ms[:, 2]):.3f}")
        say(f"  planarflow / JAX within a round, median (and the rounds' 10th–90th percentile): "
            f"full {np.median(full):.2f}× ({np.percentile(full, 10):.2f}–{np.percentile(full, 90):.2f}), "
            f"path {np.median(path):.2f}× ({np.percentile(path, 10):.2f}–{np.percentile(path, 90):.2f})")
    else:
        say("  (JAX is not installed here: pip install -e .[compare] adds it, for this comparison only)")


def print_demo():
    """The demo end to end, with each engine: wall time and peak memory."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, "demo.py")):
        say("\n(demo.py not found beside the package: end-to-end runs skipped)")
        return
    seconds, peak_mb = demo_run(root)
    say(f"\n`python demo.py` (no flags, {os.cpu_count()} cores): {seconds:.1f} s wall, "
          f"peak memory {peak_mb:.0f} MB (all its processes together)")
    ref_seconds, ref_mb = demo_run(root, "--engine", "reference")
    say(f"`python demo.py --engine reference`: {ref_seconds:.1f} s wall ({ref_seconds / seconds:.1f}× the "
          f"fused engine's), peak memory {ref_mb:.0f} MB")

