"""Reproduce Figure 3 of Rezende & Mohamed (2015): planar flows fitted to U1–U4 by reverse KL.

    python demo.py              # all 12 fits (U1–U4 × K = 2, 8, 32), about a minute on 2 cores
    python demo.py --quick      # a smoke run of a few seconds
    python demo.py --help       # every flag

Writes figure3.png (true density, then q_K for each K, one row per target) and prints a table.
Everything here is argument parsing and printing; the work is done by planarflow.experiment.
"""

import argparse
import os
import sys
import time

from planarflow import save
from planarflow.tools.experiment import KS, TARGETS, make_jobs, run_jobs, true_densities


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad flags: one line on stderr and exit status 2, before any work starts."""
        sys.stderr.write(f"demo.py: error: {message} (see python demo.py --help)\n")
        sys.exit(2)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def writable_file(path):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is a folder, expected a file path")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path!r}: {folder!r} is not a writable folder")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path!r}: the file is not writable")
    return path


def shown(path):
    """A path as the user can find it: relative to the current folder when inside it."""
    rel = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if rel.startswith("..") else rel


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", type=target_name, default=list(TARGETS), metavar="U",
                   help="targets to fit (default: U1 U2 U3 U4)")
    p.add_argument("--K", nargs="+", type=positive_int, default=list(KS), metavar="K",
                   help="numbers of layers (default: 2 8 32)")
    p.add_argument("--steps", type=positive_int, help="Adam steps per fit (default: the recipe's)")
    p.add_argument("--batch-size", type=positive_int, help="samples per step (default: the recipe's)")
    p.add_argument("--lr", type=positive_float, help="Adam's initial learning rate (default: 1e-2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", type=writable_file, default="figure3.png", help="figure path (default: figure3.png)")
    p.add_argument("--save-dir", metavar="DIR", help="write each fit's parameters to DIR/{target}_K{K}.npz")
    p.add_argument("--layers-target", type=target_name, default="U1", metavar="U",
                   help="target whose deepest flow is drawn layer by layer (default: U1)")
    p.add_argument("--workers", type=positive_int, default=2, help="processes (default: 2)")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = p.parse_args(argv)
    if args.save_dir is not None:
        if os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
            p.error(f"--save-dir: {args.save_dir!r} exists and is not a folder")
        parent = os.path.dirname(os.path.abspath(args.save_dir))
        if not os.path.isdir(args.save_dir) and not os.access(parent, os.W_OK):
            p.error(f"--save-dir: cannot create {args.save_dir!r} in {parent!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    quick = dict(steps=300, batch_size=256, grid_n=80, kl_samples=20_000, layers_grid_n=60) if args.quick else {}
    jobs = make_jobs(args.targets, args.K, seed=args.seed,
                     steps=args.steps or quick.get("steps"),
                     batch_size=args.batch_size or quick.get("batch_size"), lr=args.lr,
                     grid_n=quick.get("grid_n", 200), kl_samples=quick.get("kl_samples", 100_000),
                     layers_target=args.layers_target if args.layers_target in args.targets else None,
                     layers_grid_n=quick.get("layers_grid_n", 100))
    print(f"Fitting {len(jobs)} planar flows ({', '.join(args.targets)} × K = "
          f"{', '.join(map(str, args.K))}) on {min(args.workers, len(jobs))} processes ...", flush=True)
    start = time.perf_counter()
    stem, _ = os.path.splitext(args.out)
    written = [args.out, stem + "_training.png"]

    def draw_layers(r):
        """The layer-by-layer pictures, drawn as soon as their fit is done."""
        if "layer_densities" in r:
            from planarflow.tools.plotting import layers_figure, layers_gif

            layers_figure(r["params"], r["layer_densities"], r["name"], stem + "_layers.png")
            layers_gif(r["params"], r["layer_densities"], r["name"], stem + "_layers.gif")
            written.extend([stem + "_layers.png", stem + "_layers.gif"])

    results = run_jobs(jobs, workers=args.workers, on_result=draw_layers)

    print()
    print("target   K                   steps   final loss   floor −log Z   KL (nats)          ESS/n   seconds")
    for job, r in zip(jobs, results):
        tail = r["history"]["loss"][-max(1, len(r["history"]["loss"]) // 50):]
        steps = (f"{job['population']}×{job['population_steps']} + " if job["population"] else "") + \
            (f"{job['keep']}×{job['keep_steps']} + " if job["keep"] else "") + str(job["steps"])
        print(f"{r['name']:>6} {r['K']:3d} {steps:>23}   {tail.mean():+10.4f}   {-r['log_z']:+12.4f}"
              f"   {r['kl']:.4f} ± {r['stderr']:.4f}   {r['ess']:6.3f}   {r['seconds']:7.1f}")

    truth = true_densities(args.targets, grid_n=jobs[0]["grid_n"])
    rows = [{"name": name, "true": truth[name],
             "fits": {r["K"]: r for r in results if r["name"] == name}} for name in args.targets]
    from planarflow.tools.plotting import figure3, training_curves

    figure3(rows, args.K, args.out)
    training_curves(results, args.K, args.targets, written[1])
    if args.save_dir is not None:
        os.makedirs(args.save_dir, exist_ok=True)
        for r in results:
            save(os.path.join(args.save_dir, f"{r['name']}_K{r['K']}.npz"), r["params"])
    print(f"""
Done in {time.perf_counter() - start:.1f} s. Figures: {", ".join(shown(w) for w in written)}{
    chr(10) + "Parameters: " + shown(args.save_dir) if args.save_dir else ""}

How to read the table:
  steps          Adam steps; "P×S + R" (the recipe for K ≤ 8): P candidate flows trained at
                 once for S steps, the best of them refined for R more; "P×S + Q×S' + R"
                 (K ≤ 2): the best Q of the P train on for S' steps before the best is refined.
  final loss     the reverse-KL objective E_q[log q + U], averaged over the last 2% of steps.
                 It is bounded below by −log Z (the floor), so it is often negative.
  KL             KL(q_K ‖ p) = loss + log Z in nats, from {jobs[0]["kl_samples"]:,} fresh samples (± one standard
                 error); 0 would be a perfect fit. More layers should give a smaller KL.
  seconds        training time of the fit (scoring and drawing not included).
  ESS/n          effective sample size of importance weights p/q, as a fraction of n: 1 for a
                 perfect fit, small when q misses mass that p has.""")


if __name__ == "__main__":
    main()
