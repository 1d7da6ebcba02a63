"""Pictures: the paper's Figure 3 and friends. The only module that imports matplotlib.

matplotlib is imported inside the drawing functions, so the grid helpers here (used by the
training workers) need NumPy alone. Every picture of a flow is drawn from its exact density
``log_prob`` on a grid (through the numerical inverse) — no pushing a grid of noise forward —
with z₁ to the right and z₂ pointing up.
"""

import numpy as np

from .inverse import log_prob


def grid(limit=4.0, n=200):
    """Cell centres of an n × n grid on (−limit, limit)², as the axis x (n,) and points (n², 2).

    Points run along z₁ fastest, so ``values.reshape(n, n)`` has rows of constant z₂ (row 0 at
    the bottom with imshow(origin="lower")).
    """
    x = limit * (2.0 * (np.arange(n) + 0.5) / n - 1.0)
    z1, z2 = np.meshgrid(x, x)                       # (n, n), rows = z₂
    return x, np.column_stack([z1.ravel(), z2.ravel()])


def flow_density_on_grid(params, limit=4.0, n=200):
    """q_K on the plotting grid, from the exact log_prob; returns (n, n) with rows = z₂."""
    _, pts = grid(limit, n)
    return np.exp(log_prob(params, pts)).reshape(n, n)


def target_density_on_grid(target, log_z, limit=4.0, n=200):
    """p = exp(−U − log Z) on the plotting grid; returns (n, n) with rows = z₂."""
    _, pts = grid(limit, n)
    return np.exp(-target.energy(pts) - log_z).reshape(n, n)


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")                      # write files, never open a window
    import matplotlib.pyplot as plt

    return plt


def figure3(rows, Ks, path, limit=4.0):
    """The paper's Figure 3: per target, the true density then q_K for each K, one colour scale a row.

    Parameters
    ----------
    rows : list of dicts with keys ``name`` (e.g. "U1"), ``true`` ((n, n) density) and
        ``fits`` (dict K -> dict with ``density`` (n, n) and ``kl``, ``stderr`` floats or None)
    Ks : the K of the columns, in order
    path : where to write the PNG
    """
    plt = _pyplot()
    ncol = 1 + len(Ks)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.3 * ncol, 2.3 * len(rows) + 0.4),
                             squeeze=False)
    extent = (-limit, limit, -limit, limit)
    for r, row in enumerate(rows):
        panels = [row["true"]] + [row["fits"][K]["density"] for K in Ks]
        vmax = max(float(np.max(p)) for p in panels)
        for c, dens in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(dens, origin="lower", extent=extent, cmap="viridis", vmin=0.0, vmax=vmax,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("exp(−U)/Z" if c == 0 else f"K = {Ks[c - 1]}", fontsize=10)
            if c == 0:
                ax.set_ylabel(row["name"], fontsize=11)
            else:
                fit = row["fits"][Ks[c - 1]]
                if fit.get("kl") is not None:
                    ax.text(0.03, 0.03, f"KL {fit['kl']:.3f}", transform=ax.transAxes, color="white",
                            fontsize=8, va="bottom")
    fig.suptitle("Planar flows fitted by reverse KL (Rezende & Mohamed 2015, Fig. 3); "
                 "z₁ →, z₂ ↑, box (−4, 4)²", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
