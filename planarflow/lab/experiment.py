"""``python -m planarflow experiment``: fit the paper's targets for several seeds and recipes and
score every fit with its exact KL — the demo's twelve fits, or (--kl-vs-k) KL against the number
of layers K = 1, 2, 4, …, 64, the paper's Figure 3(d)."""

import os
import sys
import time

from ..library.progress import say
from .recipes import KL_VS_K, KS, RECIPES, REFERENCE_KS, TARGETS
from .report import check_against_reference, check_monotone, print_spread, print_table
from .runner import WorkerFailed, _label, check_job, make_jobs, run_jobs


def run_experiment(seeds, recipes, Ks, targets=TARGETS, workers=2, save_dir=None, out=None, progress=True,
                   quick=False, gradient=None):
    """Fit every (recipe, target, K, seed), print the table and the checks, draw the figure.
    ``quick``: 100 steps a fit and 5000 samples a score, a smoke run."""
    jobs = []
    for rec in recipes:
        ks = [K for K in Ks if rec == "planarflow" or K in REFERENCE_KS] if Ks == KL_VS_K else list(Ks)
        for seed in seeds:
            for job in make_jobs(targets, ks, seed=seed, grid_n=10, recipe_name=rec, gradient=gradient,
                                 **(dict(steps=100, kl_samples=5000) if quick else {})):
                job["label"] = f"{_label(job)} seed {seed}" + ("" if rec == "planarflow" else f" ({rec})")
                jobs.append(job)
    for job in jobs:
        check_job(job)
    start = time.perf_counter()
    results = run_jobs(jobs, workers=workers, progress=progress)
    say(f"{len(jobs)} fits in {time.perf_counter() - start:.0f} s on {min(workers, len(jobs))} processes")
    print_table(results, seeds, recipes, sorted({job["K"] for job in jobs}))
    if len(seeds) > 1:
        print_spread(results, seeds, sorted({job["K"] for job in jobs if job["recipe"] == "planarflow"}))
    check_monotone(results, seeds, sorted(Ks))
    if "reference" in recipes and "planarflow" in recipes:
        check_against_reference(results)
    if save_dir is not None:
        from ..library.files import save

        os.makedirs(save_dir, exist_ok=True)
        for r in results:
            save(os.path.join(save_dir, flow_file(r["name"], r["K"], r["seed"], r["recipe"])), r["params"])
    if out is not None:
        from .plotting import kl_vs_k

        kl_vs_k(results, targets, out)
        say(f"\nFigure: {out}")
    return results


def flow_file(name, K, seed, recipe_name):
    """The file name --save-dir gives one fit."""
    return f"{name}_K{K}_seed{seed}" + ("" if recipe_name == "planarflow" else "_" + recipe_name) + ".npz"


def flow_files(seeds, recipes, Ks, targets=TARGETS):
    return [flow_file(name, K, seed, rec) for rec in recipes for seed in seeds for name in targets
            for K in (Ks if rec == "planarflow" or Ks != KL_VS_K else [K for K in Ks if K in REFERENCE_KS])]


def check_save_dir(folder, names, flag="--save-dir"):
    """Before any work: ``folder`` is a folder that can be made or written, and every file to be
    written in it (``names``) can be written there — a folder or a read-only file in the way is
    reported now, not after the fits."""
    from ..library.files import check_output_path

    if not folder:
        raise ValueError(f"{flag}: expected a folder name, got ''")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{flag}: {folder!r} exists and is not a folder")
    if os.path.isdir(folder):
        for name in names:
            check_output_path(os.path.join(folder, name), flag)
    else:
        check_output_path(os.path.normpath(folder), flag)        # its parent must be writable


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m planarflow experiment",
        description="Fit the paper's targets for several seeds and recipes and score every fit with "
                    "its exact KL: the demo's twelve fits, or (--kl-vs-k) KL against the number of "
                    "layers K = 1, 2, 4, …, 64, the paper's Figure 3(d).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S")
    parser.add_argument("--recipe", nargs="+", choices=RECIPES, default=["planarflow"],
                        help="planarflow (default): this project's recipe; reference: the \"100 lines\" "
                             "PyTorch implementation's settings (20 000 steps of 4096 samples), run in "
                             "planarflow, at K = 2, 8, 32 unless --K is given")
    parser.add_argument("--kl-vs-k", action="store_true", help="K = 1, 2, 4, 8, 16, 32, 64 and the figure")
    parser.add_argument("--K", nargs="+", type=int, metavar="K", help="numbers of layers (default: 2 8 32, "
                        "or 1 2 4 … 64 with --kl-vs-k)")
    parser.add_argument("--save-dir", metavar="DIR", help="save each flow as DIR/{target}_K{K}_seed{s}.npz")
    parser.add_argument("--out", help="the figure of --kl-vs-k (default: kl_vs_k.png); only with --kl-vs-k")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100 steps a fit: a smoke run")
    parser.add_argument("--gradient", choices=("path", "full"),
                        help="the gradient of every recipe's final runs (default: the recipe's — path for "
                             "planarflow's, full for the reference)")
    args = parser.parse_args(argv)
    Ks = tuple(args.K) if args.K else (KL_VS_K if args.kl_vs_k else KS)
    problems = ([f"--seeds: expected non-negative integers, got {s}" for s in args.seeds if s < 0]
                + [f"--K: expected integers from 1 to 256, got {K}" for K in Ks if not 1 <= K <= 256]
                + ([f"--workers: expected 1 to 64, got {args.workers}"] if not 1 <= args.workers <= 64 else [])
                + [f"{flag}: {', '.join(map(str, sorted({v for v in vals if list(vals).count(v) > 1})))} given twice"
                   for flag, vals in (("--seeds", args.seeds), ("--K", Ks), ("--recipe", args.recipe))
                   if len(set(vals)) < len(vals)])
    if args.out is not None and not args.kl_vs_k:
        problems.append("--out: only --kl-vs-k draws a figure; add --kl-vs-k or leave out --out")
    out = (args.out or "kl_vs_k.png") if args.kl_vs_k else None
    try:
        from ..library.files import check_output_path

        if out is not None:
            if os.path.splitext(out)[1].lower() not in (".png", ".pdf", ".svg"):
                raise ValueError(f"--out: expected a file name ending in .png, .pdf or .svg, got {out!r}")
            check_output_path(out, "--out")
        if args.save_dir is not None:
            check_save_dir(args.save_dir, flow_files(args.seeds, args.recipe, Ks))
    except (ValueError, OSError) as exc:
        problems.append(str(exc))
    if problems:
        parser.error(problems[0])
    try:
        run_experiment(args.seeds, args.recipe, Ks, workers=args.workers, save_dir=args.save_dir, out=out,
                       quick=args.quick, gradient=args.gradient)
    except WorkerFailed as exc:
        sys.stderr.write(f"python -m planarflow experiment: {exc}\n")
        return 1
    return 0
