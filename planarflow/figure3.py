"""The paper's Figure 3 from the lesson files alone: U₁–U₄, true density and flows of K layers.

Copy reference.py, targets.py and this file into one folder, then

    python figure3.py                  # K = 2, 8, 32 on U1–U4, about two minutes; figure3_lesson.png
    python figure3.py --K 16 --steps 1000
    python figure3.py --help

Each row is one target: its density e^{−U}/Z on a grid (Z by summing the grid), then a histogram
of 200 000 samples of each fitted flow, all on (−4, 4)² and on the row's colour scale. The fits
are reference.fit's, as in reference.py's own run: Adam from 2e-2 down to 5e-4 (a cosine), β
annealed over the first third, the default (full) gradient. planarflow's demo.py draws the same
figure with the exact density of each flow and a recipe tuned per K; this file shows how little
the lesson needs to do it. NumPy and matplotlib only.
"""

import argparse
import os
import sys
from types import SimpleNamespace

import numpy as np

try:                                # inside the package, or copied beside reference.py and targets.py
    from . import reference, targets
except ImportError:
    import reference
    import targets


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python figure3.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--K", nargs="+", type=int, default=[2, 8, 32], help="numbers of layers (default 2 8 32)")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps a fit (default 3000)")
    parser.add_argument("--out", default="figure3_lesson.png", help="the picture (default figure3_lesson.png)")
    args = parser.parse_args(argv)
    if not (all(1 <= K <= 256 for K in args.K) and 1 <= args.steps <= 10 ** 7):
        parser.error("--K: 1 to 256 layers; --steps: 1 to 10⁷")
    folder = os.path.dirname(os.path.abspath(args.out))                  # checked before the fits
    if os.path.splitext(args.out)[1].lower() not in (".png", ".pdf", ".svg") or os.path.isdir(args.out):
        parser.error(f"--out: expected a file name ending in .png, .pdf or .svg, got {args.out!r}")
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        parser.error(f"--out: the folder {folder} does not exist or cannot be written")
    import matplotlib.pyplot as plt

    edges = np.linspace(-4.0, 4.0, 121)
    mid = 0.5 * (edges[1:] + edges[:-1])
    grid = np.stack(np.meshgrid(mid, mid), axis=-1).reshape(-1, 2)            # rows of constant z₂
    fig, axes = plt.subplots(4, 1 + len(args.K), figsize=(2.2 * (1 + len(args.K)), 8.8), squeeze=False)
    for row, name in enumerate(["U1", "U2", "U3", "U4"]):
        target = SimpleNamespace(energy=lambda z, name=name: targets.paper_energy(name, z)[0],   # inside the
                                 grad=lambda z, name=name: targets.paper_energy(name, z)[1])     # box wall
        p = np.exp(-target.energy(grid))
        p = (p / (p.sum() * (mid[1] - mid[0]) ** 2)).reshape(120, 120)
        images = [p]
        for K in args.K:
            params = reference.fit(target, K, args.steps, 256, lr=2e-2, lr_final=5e-4,
                                   anneal_steps=max(1, args.steps // 3), rng=K)
            z, _ = reference.sample(params, 200_000, rng=1)
            images.append(np.histogram2d(z[:, 1], z[:, 0], bins=[edges, edges], density=True)[0])
            print(f"{name} K = {K:2d}: fitted", flush=True)
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", extent=(-4, 4, -4, 4), vmin=0, vmax=p.max(), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("e^(−U)/Z" if col == 0 else f"K = {args.K[col - 1]}")
        axes[row, 0].set_ylabel(name)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"Figure: {args.out} (rows U1–U4; the true density, then the flow's samples for each K)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
