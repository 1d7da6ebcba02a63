"""Pictures: the paper's Figure 3 and friends. The only module that imports matplotlib.

matplotlib is imported inside the drawing functions, so the grid helpers here (used by the
training workers) need NumPy alone. Every picture of a flow is drawn from its exact density
``log_prob`` on a grid (through the numerical inverse) — no pushing a grid of noise forward —
with z₁ to the right and z₂ pointing up.
"""

import os
import textwrap

import numpy as np

from ..reference import std_normal_log_density
from ..library.api import log_prob
from ..library.files import atomic_output


def kl_text(kl, stderr, decimals=4, sep=" ± "):
    """KL ± its standard error, to the decimal place of the error's first significant digit
    (at least ``decimals``): never "0.0002 ± 0.0000"."""
    if np.isfinite(stderr) and stderr > 0:
        decimals = max(decimals, -int(np.floor(np.log10(stderr))))
    return f"{kl:.{decimals}f}{sep}{stderr:.{decimals}f}"


def grid(limit=4.0, n=200):
    """Cell centres of an n × n grid on (−limit, limit)², as the axis x (n,) and points (n², 2).

    Points run along z₁ fastest, so ``values.reshape(n, n)`` has rows of constant z₂ (row 0 at
    the bottom with imshow(origin="lower")).
    """
    x = limit * (2.0 * (np.arange(n) + 0.5) / n - 1.0)
    z1, z2 = np.meshgrid(x, x)                       # (n, n), rows = z₂
    return x, np.column_stack([z1.ravel(), z2.ravel()])


def flow_density_on_grid(params, limit=4.0, n=200, layers=None):
    """q_K on the plotting grid, from the exact log_prob; returns (n, n) with rows = z₂.

    ``layers=k`` draws the density after the first k layers only (k = 0: q₀ = N(0, I)).
    """
    _, pts = grid(limit, n)
    if layers is not None:
        if layers == 0:
            return np.exp(std_normal_log_density(pts)).reshape(n, n)
        params = {key: v[:layers] for key, v in params.items()}
    return np.exp(log_prob(params, pts)).reshape(n, n)


def target_density_on_grid(target, log_z, limit=4.0, n=200):
    """p = exp(−U − log Z) on the plotting grid; returns (n, n) with rows = z₂."""
    _, pts = grid(limit, n)
    return np.exp(-target.energy(pts) - log_z).reshape(n, n)


def _save(fig, path, dpi):
    """fig.savefig through io.atomic_output: an interrupted write never leaves a broken file."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=os.path.splitext(path)[1][1:].lower() or "png")


def _suptitle(fig, text, width_inches, fontsize):
    """A figure title wrapped to the figure's width (a one-panel figure is narrow)."""
    chars = max(30, int(width_inches * 72 / (0.55 * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


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
                    ax.text(0.03, 0.03, f"KL {fit['kl']:.2g}" if fit["kl"] < 0.01 else f"KL {fit['kl']:.3f}",
                            transform=ax.transAxes, color="white",
                            fontsize=8, va="bottom")
    _suptitle(fig, "Planar flows fitted by reverse KL (Rezende & Mohamed 2015, Fig. 3); "
                   "z₁ →, z₂ ↑, box (−4, 4)²", fig.get_figwidth(), 9)
    fig.tight_layout()
    _save(fig, path, 110)
    plt.close(fig)


def training_curves(results, Ks, names, path, window=50):
    """Loss against step for each (target, K): the floor −log Z as a line, the annealing phase
    (β < 1) shaded, the population phase marked, the final exact KL written on the panel.

    ``results`` are experiment.run_job results. The loss of one step is noisy (one batch); the
    line is its running mean over ``window`` steps, the raw values faint behind it.
    """
    plt = _pyplot()
    by_key = {(r["name"], r["K"]): r for r in results}
    fig, axes = plt.subplots(len(names), len(Ks), figsize=(3.2 * len(Ks), 2.3 * len(names) + 0.5),
                             squeeze=False)
    for i, name in enumerate(names):
        for j, K in enumerate(Ks):
            ax, r = axes[i, j], by_key[(name, K)]
            loss, beta = r["curve"]["loss"], r["curve"]["beta"]
            steps = np.arange(1, loss.size + 1)
            floor = -r["log_z"]
            if i == 0:
                ax.set_title(f"K = {K}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{name}: loss", fontsize=9)
            if loss.size == 0:                       # diverged at its first step
                ax.text(0.5, 0.5, "diverged at step 0", transform=ax.transAxes, ha="center", fontsize=8)
                continue
            ax.plot(steps, loss, color="0.8", lw=0.5)
            w = min(window, loss.size)
            smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1:], smooth, color="C0", lw=1.2, label="loss (running mean)")
            ax.axhline(floor, color="C3", lw=1, ls="--", label="floor −log Z")
            annealed = np.flatnonzero(beta < 1.0)
            for start, stop in _runs(annealed):
                ax.axvspan(start + 1, stop + 1, color="C1", alpha=0.12, lw=0,
                           label="annealing (β < 1)" if start == annealed[0] else None)
            if r["curve"].get("kept"):
                ax.axvline(r["curve"]["kept"], color="0.3", lw=0.8, ls="-.", label="best few kept")
            if r["curve"]["switch"]:
                ax.axvline(r["curve"]["switch"], color="0.3", lw=0.8, ls=":", label="best candidate refined")
            ax.set_ylim(floor - 0.15, floor + max(1.0, 2.5 * (np.median(smooth[-w:]) - floor) + 0.3))
            ax.text(0.97, 0.93, f"KL {kl_text(r['kl'], r['stderr'], decimals=3)}", transform=ax.transAxes,
                    ha="right", va="top", fontsize=8)
            if i == len(names) - 1:
                ax.set_xlabel("step", fontsize=9)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.ravel()[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = max(1, min(len(labels), 2 * len(Ks)))            # narrow figures: legend on more rows
    rows = -(-len(labels) // ncol)
    bottom = 0.022 * rows * 10 / fig.get_figheight()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    _suptitle(fig, "Training: the loss approaches the floor −log Z; the gap is the KL", fig.get_figwidth(), 10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    _save(fig, path, 100)
    plt.close(fig)


def _runs(indices):
    """Consecutive runs in a sorted index array, as (first, last) pairs."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) > 1)
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    stops = np.concatenate([indices[breaks], [indices[-1]]])
    return list(zip(starts, stops))


def _hyperplane(ax, w, b, limit):
    """Draw the line wᵀz + b = 0 on (−limit, limit)²."""
    x = np.array([-limit, limit])
    if abs(w[1]) > abs(w[0]):
        ax.plot(x, -(w[0] * x + b) / w[1], color="white", lw=0.9, ls="--")
    else:
        ax.plot(-(w[1] * x + b) / w[0], x, color="white", lw=0.9, ls="--")
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)


def layers_figure(params, densities, name, path, shown=(0, 1, 2, 4, 8, 16, 32), limit=4.0):
    """The density after 0, 1, 2, 4, … layers of one trained flow, each panel with the
    hyperplane w_{k+1}ᵀz + b_{k+1} = 0 of the next layer: the line across which that layer moves
    points apart (or together) along û, stretching (or compressing) the density there."""
    plt = _pyplot()
    K = params["u"].shape[0]
    shown = [k for k in shown if k <= K]
    fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6), squeeze=False)
    for ax, k in zip(axes[0], shown):
        ax.imshow(densities[k], origin="lower", extent=(-limit, limit, -limit, limit), cmap="viridis")
        if k < K:
            _hyperplane(ax, params["w"][k], params["b"][k], limit)
        ax.set_title(f"after {k} layer{'s' if k != 1 else ''}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _suptitle(fig, f"{name}, K = {K}: the density after k layers (exact, from log_prob); dashed: the "
                   f"next layer's hyperplane wᵀz + b = 0", fig.get_figwidth(), 9)
    fig.tight_layout()
    _save(fig, path, 100)
    plt.close(fig)


def layers_gif(params, densities, name, path, limit=4.0, fps=4):
    """The same as an animation, one frame per layer, through matplotlib's Pillow writer."""
    plt = _pyplot()
    from matplotlib.animation import PillowWriter

    K = params["u"].shape[0]
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    writer = PillowWriter(fps=fps)
    with atomic_output(path) as tmp, writer.saving(fig, tmp, dpi=80):
        for k, dens in enumerate(densities):
            ax.clear()
            ax.imshow(dens, origin="lower", extent=(-limit, limit, -limit, limit), cmap="viridis")
            if k < K:
                _hyperplane(ax, params["w"][k], params["b"][k], limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: after {k} of {K} layers", fontsize=9)
            writer.grab_frame()
    plt.close(fig)


def kl_vs_k(results, names, path, floor=1e-4):
    """The paper's Figure 3(d) with exact numbers: KL(q_K ‖ p) against K, log–log, one panel per
    target, one curve per recipe (the mean over seeds), each fit's KL drawn with ± 2 standard
    errors. KL below ``floor`` (a perfect fit's estimate can be 0 or a hair below) is drawn at it."""
    plt = _pyplot()
    recipes = sorted({r["recipe"] for r in results}, key=lambda rec: rec != "planarflow")
    labels = {"planarflow": "planarflow's recipe", "reference": "the PyTorch implementation's recipe"}
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for c, rec in enumerate(recipes):
            mine = [r for r in results if r["name"] == name and r["recipe"] == rec]
            Ks = sorted({r["K"] for r in mine})
            seeds = sorted({r["seed"] for r in mine})
            for i, s in enumerate(seeds):
                pts = sorted((r["K"], r["kl"], r["stderr"]) for r in mine if r["seed"] == s)
                K = np.array([p[0] for p in pts]) * (1.0 + 0.06 * (i - (len(seeds) - 1) / 2))   # side by side
                kl = np.maximum([p[1] for p in pts], floor)
                ax.errorbar(K, kl, yerr=2 * np.array([p[2] for p in pts]), fmt="o", ms=2.5, color=f"C{c}",
                            alpha=0.6, elinewidth=0.8, capsize=1.5)
            mean = [np.mean([r["kl"] for r in mine if r["K"] == K]) for K in Ks]
            ax.plot(Ks, np.maximum(mean, floor), "-", color=f"C{c}", lw=1.3, label=labels.get(rec, rec))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ks = sorted({r["K"] for r in results})
        ax.set_xticks(ks)
        ax.set_xticklabels([str(K) for K in ks])
        ax.xaxis.set_minor_locator(matplotlib_ticker().NullLocator())
        ax.yaxis.set_minor_formatter(matplotlib_ticker().NullFormatter())
        ax.set_xlabel("K (layers)", fontsize=9)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("KL(q_K ‖ p), nats", fontsize=9)
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=len(texts), fontsize=8, frameon=False)
    _suptitle(fig, "Figure 3(d) with exact numbers: KL against the number of layers (points: each seed's "
                   "fit ± 2 standard errors; line: the mean over seeds)", fig.get_figwidth(), 10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path, 110)
    plt.close(fig)
