"""Reproduce Figure 3 of Rezende & Mohamed (2015): planar flows fitted to U1–U4 by reverse KL.

    python demo.py              # all 12 fits (U1–U4 × K = 2, 8, 32), about a minute on 2 cores
    python demo.py --quick      # a smoke run of a few seconds
    python demo.py --help       # every flag

Writes figure3.png (true density, then q_K for each K, one row per target) and prints a table.
Everything here is argument parsing and printing; the work is done by planarflow/lab/ (recipes.py, runner.py, plotting.py).
"""

import argparse
import os
import sys
import time

from planarflow import save
from planarflow.lab.experiment import check_save_dir
from planarflow.lab.plotting import kl_text
from planarflow.lab.recipes import KS, RECIPES, TARGETS, recipe_summary, stages
from planarflow.lab.report import true_densities
from planarflow.lab.runner import WorkerFailed, check_job, make_jobs, run_jobs
from planarflow.library.files import check_output_path
from planarflow.library.progress import isatty, say, write
from planarflow.library.training import MAX_STEPS

FIGURE_FORMATS = (".png", ".pdf", ".svg")
MAX_K, MAX_WORKERS = 256, 64


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad flags: one line on stderr and exit status 2, before any work starts."""
        sys.stderr.write(f"demo.py: error: {message} (see python demo.py --help)\n")
        sys.exit(2)


def bounded_int(low, high):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    return parse


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def target_name(text):
    if text not in TARGETS:
        raise argparse.ArgumentTypeError(f"unknown target {text!r}; choose from {', '.join(TARGETS)}")
    return text


def figure_path(path):
    if not path or os.path.splitext(path)[1].lower() not in FIGURE_FORMATS:
        raise argparse.ArgumentTypeError(f"expected a file name ending in {', '.join(FIGURE_FORMATS)}, got {path!r}")
    return path


def shown(path):
    """A path as the user can find it: relative to the current folder when inside it."""
    rel = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if rel.startswith("..") else rel


def outputs(out):
    """Every figure a run writes, from --out: the figure, the training curves, the layers."""
    stem, ext = os.path.splitext(out)
    return {"figure": out, "training": stem + "_training" + ext, "layers": stem + "_layers" + ext,
            "gif": stem + "_layers.gif"}


def build_parser():
    """Every flag, with its type check and help; the recipe for each K in the epilog."""
    summary = "\n  ".join(recipe_summary(range(1, MAX_K + 1)))
    reference = "\n  ".join(recipe_summary(range(1, MAX_K + 1), name="reference"))
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=f"The recipe for each K (planarflow.lab.recipes.recipe):\n  {summary}\n"
                      "A step of the candidates' stages trains all candidates at once (populations).\n"
                      f"--recipe reference, for every K (u, w, b ~ Uniform(0, 1), no annealing):\n  {reference}")
    p.add_argument("--targets", nargs="+", type=target_name, default=list(TARGETS), metavar="U",
                   help="targets to fit (default: U1 U2 U3 U4)")
    p.add_argument("--K", nargs="+", type=bounded_int(1, MAX_K), default=list(KS), metavar="K",
                   help=f"numbers of layers, 1 to {MAX_K} (default: 2 8 32)")
    p.add_argument("--steps", type=bounded_int(1, MAX_STEPS),
                   help="Adam steps of each fit's final run (default: the recipe's, below); the "
                        "candidates' stages scale with it")
    p.add_argument("--batch-size", type=bounded_int(1, 10 ** 7),
                   help="samples per step of the final run (default: 1024; candidates use at most 256, "
                        "512 for K > 16)")
    p.add_argument("--lr", type=positive_float,
                   help="Adam's initial learning rate of each fit's final run (default: the recipe's, "
                        "below); candidates start at 5 × this (1.5 × for K > 16)")
    p.add_argument("--seed", type=bounded_int(0, 2 ** 63 - 1), default=0,
                   help="random seed, a non-negative integer (default: 0)")
    p.add_argument("--out", type=figure_path, default="figure3.png",
                   help="figure path, .png, .pdf or .svg (default: figure3.png); the training curves and "
                        "layer pictures go beside it")
    p.add_argument("--save-dir", metavar="DIR", help="write each fit's parameters to DIR/{target}_K{K}.npz")
    p.add_argument("--layers-target", type=target_name, metavar="U",
                   help="target whose deepest flow is drawn layer by layer; one of --targets "
                        "(default: the first of --targets)")
    p.add_argument("--recipe", choices=RECIPES, default="planarflow",
                   help="planarflow (default): the recipe below; reference: the \"100 lines\" PyTorch "
                        "implementation's settings — u, w, b ~ Uniform(0, 1), Adam at 1e-2, batches of "
                        "4096, 20 000 steps, no annealing — run in planarflow (several minutes)")
    p.add_argument("--gradient", choices=("path", "full"),
                   help="the final runs' gradient (default: the recipe's — path for planarflow's, full for "
                        "the reference): path drops the score term (path_gradient.py), full keeps it")
    p.add_argument("--engine", choices=("fused", "reference"), default="fused",
                   help="fused (default): the fast engine; reference: every step through "
                        "planarflow/reference.py, the code you read and edit — the same numbers to "
                        "rounding, about five times slower (python -m planarflow benchmark measures it)")
    p.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), default=2, help="processes (default: 2)")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    return p


def parse_args(argv=None):
    """The flags, checked against each other and every output path before any work."""
    p = build_parser()
    args = p.parse_args(argv)
    for flag, values in (("--targets", args.targets), ("--K", args.K)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            p.error(f"{flag}: {', '.join(map(str, twice))} given more than once")
    if args.layers_target is None:
        args.layers_target = args.targets[0]
    elif args.layers_target not in args.targets:
        p.error(f"--layers-target: {args.layers_target} is not among --targets ({' '.join(args.targets)})")
    try:
        for path in outputs(args.out).values():
            check_output_path(path, "--out")
        if args.save_dir is not None:
            check_save_dir(args.save_dir, [f"{name}_K{K}.npz" for name in args.targets for K in args.K])
        args.jobs = jobs_for(args)
        for job in args.jobs:
            check_job(job)
    except (ValueError, OSError) as exc:
        p.error(str(exc).replace("batch_size", "--batch-size"))
    return args


def jobs_for(args):
    quick = dict(steps=300, batch_size=256, grid_n=80, kl_samples=20_000, layers_grid_n=60) if args.quick else {}
    return make_jobs(args.targets, args.K, seed=args.seed, steps=args.steps or quick.get("steps"),
                     batch_size=args.batch_size or quick.get("batch_size"), lr=args.lr,
                     grid_n=quick.get("grid_n", 200), kl_samples=quick.get("kl_samples", 100_000),
                     layers_target=args.layers_target, layers_grid_n=quick.get("layers_grid_n", 100),
                     engine=args.engine, recipe_name=args.recipe, gradient=args.gradient)


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def run(args):
    jobs, files = args.jobs, outputs(args.out)
    n_proc = min(args.workers, len(jobs))
    say(f"Fitting {plural(len(jobs), 'planar flow')} ({', '.join(args.targets)} × K = "
        f"{', '.join(map(str, args.K))}) on {plural(n_proc, 'process')}, {args.recipe} recipe, "
        f"{args.engine} engine ...")
    start = time.perf_counter()
    written = [files["figure"], files["training"]]

    def draw_layers(r):
        """The layer-by-layer pictures, drawn as soon as their fit is done."""
        if "layer_densities" in r:
            from planarflow.lab.plotting import layers_figure, layers_gif

            layers_figure(r["params"], r["layer_densities"], r["name"], files["layers"])
            layers_gif(r["params"], r["layer_densities"], r["name"], files["gif"])
            written.extend([files["layers"], files["gif"]])

    results = run_jobs(jobs, workers=args.workers, on_result=draw_layers)

    say()
    say("target   K                   steps   final loss   floor −log Z   KL (nats)          ESS/n     k̂   seconds")
    for job, r in zip(jobs, results):
        tail = r["history"]["loss"][-max(1, len(r["history"]["loss"]) // 50):]
        note = "" if r["diverged"] is None else f"   diverged at step {r['diverged']}: last valid parameters"
        final = f"{tail.mean():+10.4f}" if tail.size else f"{'—':>10}"          # no step completed
        say(f"{r['name']:>6} {r['K']:3d} {stages(job):>23}   {final}"
            f"   {-r['log_z']:+12.4f}   {kl_text(r['kl'], r['stderr']):<17}  {r['ess']:6.3f}  {r['k_hat']:5.2f}"
            f"   {r['seconds']:7.1f}{note}")

    truth = true_densities(args.targets, grid_n=jobs[0]["grid_n"])
    rows = [{"name": name, "true": truth[name],
             "fits": {r["K"]: r for r in results if r["name"] == name}} for name in args.targets]
    from planarflow.lab.plotting import figure3, training_curves

    figure3(rows, args.K, files["figure"])
    training_curves(results, args.K, args.targets, files["training"])
    if args.save_dir is not None:
        os.makedirs(args.save_dir, exist_ok=True)
        for r in results:
            save(os.path.join(args.save_dir, f"{r['name']}_K{r['K']}.npz"), r["params"])
    if any(r["diverged"] is not None for r in results):
        say("\nSome fits diverged (a loss or gradient stopped being finite, or a step left the "
            "parameters' domain);\ntheir rows show the last valid parameters. Try a smaller --lr.")
    say(f"""
Done in {time.perf_counter() - start:.1f} s. Figures: {", ".join(shown(w) for w in written)}{
    chr(10) + "Parameters: " + shown(args.save_dir) if args.save_dir else ""}

How to read the table:
  steps          Adam steps; "P×S + R": P candidate flows trained at once for S steps, the best
                 of them refined for R more; "P×S + Q×S' + R": the best Q of the P train on for S'
                 steps before the best is refined; a single number: one run.
  final loss     the reverse-KL objective E_q[log q + U], averaged over the last 2% of steps.
                 It is bounded below by −log Z (the floor), so it is often negative.
  KL             KL(q_K ‖ p) = loss + log Z in nats, from {jobs[0]["kl_samples"]:,} fresh samples (± one standard
                 error); 0 would be a perfect fit. More layers should give a smaller KL.
  ESS/n          effective sample size of importance weights p/q, as a fraction of n: 1 for a
                 perfect fit, small when q misses mass that p has.
  k̂              the Pareto shape of the largest weights (PSIS): below 0.7 importance sampling
                 with this flow is reliable and ESS/n means what it says; above 0.7 neither is
                 (a few huge weights decide them, and another sample gives other numbers).
  seconds        training time of the fit (scoring and drawing not included).""")
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        write(sys.stderr, ("\n" if isatty(sys.stderr) else "") + "demo.py: interrupted; figures already "
              "written are complete, none is half-written\n")
        return 130
    except WorkerFailed as exc:
        write(sys.stderr, f"demo.py: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
