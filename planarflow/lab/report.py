"""What the Figure 3 experiment prints: the table of every fit (KL ± standard error, ESS/n, k̂),
the spread over seeds, the check that more layers never do worse, and the comparison with the
PyTorch implementation's recipe."""

import numpy as np

from ..library.api import get_target, log_partition
from ..library.progress import say
from .plotting import kl_text, target_density_on_grid
from .recipes import TARGETS


def true_densities(names, box=4.0, wall=0.2, grid_n=200):
    """exp(−U)/Z on the plotting grid for each target name (Z by quadrature)."""
    out = {}
    for name in names:
        target = get_target(name, box=box, wall=wall)
        out[name] = target_density_on_grid(target, log_partition(target), 4.0, grid_n)
    return out


def cell(r):
    """One fit in a table: KL ± its standard error, ESS/n and k̂."""
    mark = "!" if r["diverged"] is not None else " "
    return f"{kl_text(r['kl'], r['stderr'], sep='±'):>15} {r['ess']:5.3f} {r['k_hat']:5.2f}{mark}"


def print_table(results, seeds, recipes, Ks):
    """Rows (recipe, target, K); per seed: KL ± standard error, ESS/n and k̂."""
    by_key = {(r["recipe"], r["name"], r["K"], r["seed"]): r for r in results}
    say("\nKL (nats) ± standard error, ESS/n and k̂ of each fit (! = diverged, scored from its last"
          " valid parameters)")
    say(f"{'recipe':>10} {'target':>6} {'K':>3}  " + "".join(f"  {'seed ' + str(s) + ': KL ± se, ESS/n, k̂':<27}" for s in seeds))
    for rec in recipes:
        for name in TARGETS:
            for K in Ks:
                if (rec, name, K, seeds[0]) in by_key:
                    say(f"{rec:>10} {name:>6} {K:3d}  " + "".join(f"  {cell(by_key[(rec, name, K, s)]):<27}" for s in seeds))


def check_monotone(results, seeds, Ks, slack=0.01):
    """Lines reporting every (target, seed) where doubling K raised the KL by more than slack."""
    by_key = {(r["name"], r["K"], r["seed"]): r["kl"] for r in results if r["recipe"] == "planarflow"}
    pairs = [(K, 2 * K) for K in Ks if 2 * K in Ks]
    bad = [f"  {name} seed {s}: K = {K} → {K2}: {by_key[(name, K, s)]:.4f} → {by_key[(name, K2, s)]:.4f}"
           for name in TARGETS for s in seeds for K, K2 in pairs
           if (name, K, s) in by_key and by_key[(name, K2, s)] > by_key[(name, K, s)] + slack]
    n = sum(1 for name in TARGETS for s in seeds for K, K2 in pairs if (name, K, s) in by_key)
    if n == 0:                                          # no K and 2K both fitted: nothing to check
        return
    say(f"\nDoubling K (planarflow's recipe): KL(2K) ≤ KL(K) + {slack} nats in {n - len(bad)} of {n} cases")
    for line in bad:
        say(line)


def print_spread(results, seeds, Ks):
    """Per (target, K) of planarflow's recipe: the median and the worst KL over the seeds — how
    much a single seed's number moves."""
    by_key = {}
    for r in results:
        if r["recipe"] == "planarflow":
            by_key.setdefault((r["name"], r["K"]), []).append(r["kl"])
    say(f"\nOver the {len(seeds)} seeds (planarflow's recipe), KL in nats: median and worst")
    say("  target " + "".join(f"{'K = ' + str(K):>22}" for K in Ks))
    for name in TARGETS:
        cells = [by_key.get((name, K)) for K in Ks]
        if any(cells):
            say(f"  {name:>6} " + "".join(f"{np.median(c):11.4f}{max(c):11.4f}" if c else f"{'':22}" for c in cells))


def check_against_reference(results, margin=0.0):
    """Each fit with planarflow's recipe against the PyTorch implementation's recipe run in
    planarflow on the same target and K: at or below the median over its seeds of that KL
    (+ margin)? (The median: the two recipes' seeds are unrelated streams, and one unlucky seed of
    either should neither set nor excuse the bar.)"""
    ref = {}
    for r in results:
        if r["recipe"] == "reference":
            ref.setdefault((r["name"], r["K"]), []).append(r["kl"])
    mine = [r for r in results if r["recipe"] == "planarflow" and (r["name"], r["K"]) in ref]
    bar = {key: float(np.median(kls)) + margin for key, kls in ref.items()}
    above = [r for r in mine if r["kl"] > bar[(r["name"], r["K"])]]
    allowance = f" + {margin} nats" if margin else " (no allowance)"
    say(f"\nplanarflow's recipe against the PyTorch implementation's (20 000 steps of 4096, run in "
          f"planarflow): {len(mine) - len(above)} of {len(mine)} fits at or below the median of its KL "
          f"over the seeds{allowance}")
    say("  target   K   PyTorch recipe: median" + (f" + {margin}" if margin else "") + "   planarflow's recipe: worst seed")
    for key in sorted(bar, key=lambda k: (k[1], k[0])):
        worst = max(r["kl"] for r in mine if (r["name"], r["K"]) == key)
        say(f"  {key[0]:>6} {key[1]:3d}   {bar[key]:28.4f}   {worst:21.4f}" + ("  ✗" if worst > bar[key] else ""))


