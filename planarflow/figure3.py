"""The paper's Figure 3 from the lesson files alone: U₁–U₄, true density and flows of K layers.

Copy reference.py, targets.py and this file into one folder, then

    python figure3.py                  # K = 2, 8, 32 on U1–U4; writes figure3_lesson.png
    python figure3.py --K 16 --steps 1000
    python figure3.py --help

Each row is one target: its density e^{−U}/Z on (−4, 4)², then a histogram of 200 000 samples of
each fitted flow, every panel on its own colour scale, titled with its KL(q_K ‖ p) in nats
(E_q[log q_K + U] + log Z over those samples, log Z by summing e^{−U} on a fine grid that holds
the box wall too). The fits are reference.fit's, as in reference.py's own run: Adam from 2e-2 to
5e-4 (a cosine), β annealed over the first third, the full gradient. planarflow's demo.py draws
the same figure with the exact density of each flow and a recipe tuned per K; this file shows how
little the lesson needs to do it. NumPy and matplotlib only; it prints how long it took.
"""

import argparse
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

try:                          # inside the package, or copied beside reference.py and targets.py
    from . import reference, targets
except ImportError:
    import reference
    import targets


def log_partition(target, spacing=0.01, limit=7.0):
    """log ∫ e^{−U} dz by a Riemann sum on (−limit, limit)², which holds the box wall (it has risen
    by ½·15² nats at 4 + 15·0.2 = 7)."""
    x = np.arange(-limit, limit + spacing / 2, spacing)
    grid = np.stack(np.meshgrid(x, x), axis=-1).reshape(-1, 2)
    neg_U = -target.energy(grid)
    return float(neg_U.max() + np.log(np.exp(neg_U - neg_U.max()).sum()) + 2 * np.log(spacing))


def parse(argv):
    """The flags, each output checked before any fit."""
    parser = argparse.ArgumentParser(prog="python figure3.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--K", nargs="+", type=int, default=[2, 8, 32],
                        help="numbers of layers (default 2 8 32)")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps a fit (default 3000)")
    parser.add_argument("--out", default="figure3_lesson.png",
                        help="the picture (default figure3_lesson.png)")
    args = parser.parse_args(argv)
    if not (all(1 <= K <= 256 for K in args.K) and 1 <= args.steps <= 10 ** 7):
        parser.error("--K: 1 to 256 layers; --steps: 1 to 10⁷")
    folder = os.path.dirname(os.path.abspath(args.out))
    if os.path.splitext(args.out)[1].lower() not in (".png", ".pdf", ".svg") or \
            os.path.isdir(args.out):
        parser.error(f"--out: expected a file name ending in .png, .pdf or .svg, got {args.out!r}")
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        parser.error(f"--out: the folder {folder} does not exist or cannot be written")
    return args


def main(argv=None):
    args = parse(argv)
    import matplotlib.pyplot as plt

    began = time.perf_counter()
    edges = np.linspace(-4.0, 4.0, 121)
    mid = 0.5 * (edges[1:] + edges[:-1])
    grid = np.stack(np.meshgrid(mid, mid), axis=-1).reshape(-1, 2)          # rows of constant z₂
    columns = 1 + len(args.K)
    fig, axes = plt.subplots(4, columns, figsize=(2.2 * columns, 8.8), squeeze=False)
    for row, name in enumerate(["U1", "U2", "U3", "U4"]):          # each inside the box wall
        target = SimpleNamespace(energy=lambda z, name=name: targets.paper_energy(name, z)[0],
                                 grad=lambda z, name=name: targets.paper_energy(name, z)[1])
        log_z = log_partition(target)
        panels = [("e^(−U)/Z", np.exp(-target.energy(grid) - log_z).reshape(120, 120))]
        for K in args.K:
            params = reference.fit(target, K, args.steps, 256, lr=2e-2, lr_final=5e-4,
                                   anneal_steps=max(1, args.steps // 3), rng=K)
            z, log_q = reference.sample(params, 200_000, rng=1)
            kl = float(np.mean(log_q + target.energy(z)) + log_z)
            image = np.histogram2d(z[:, 1], z[:, 0], bins=[edges, edges])[0]
            panels.append((f"K = {K}: KL {kl:.3f}", image))
            print(f"{name} K = {K:2d}: fitted, KL(q_K ‖ p) = {kl:.4f} nats", flush=True)
        for col, (title, image) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")   # own scale
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(name)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"Figure: {args.out} (rows U1–U4; the true density, then the flow's samples for each "
          f"K, titled with its KL in nats); {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
