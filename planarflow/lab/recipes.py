"""The recipes of the Figure 3 experiment: training settings for a K-layer flow on the paper's
targets — planarflow's own (populations of candidates, then a refined run) and the "100 lines"
PyTorch implementation's, run in planarflow for comparison — and the lists of targets and K."""

TARGETS = ("U1", "U2", "U3", "U4")
KS = (2, 8, 32)

RECIPES = ("planarflow", "reference")


def uniform_start(K, rng, dim=2):
    """The "100 lines" PyTorch implementation's initialisation: u, w, b ~ Uniform(0, 1)."""
    return {"u": rng.uniform(0, 1, (K, dim)), "w": rng.uniform(0, 1, (K, dim)), "b": rng.uniform(0, 1, K)}


def reference_recipe(K, steps=None, batch_size=None, lr=None, gradient=None):
    """The "100 lines" PyTorch implementation's settings, trained in planarflow: u, w, b ~
    Uniform(0, 1), Adam at a constant learning rate 1e-2, batches of 4096, 20 000 steps,
    β = 1 throughout (no annealing), the full gradient, and the last parameters returned whatever
    happened (fit's keep_best=False), as that implementation's loop does. Arguments given
    override it, as for ``recipe`` (``gradient="path"``: those settings with the path gradient)."""
    return {"steps": 20_000 if steps is None else steps, "batch_size": 4096 if batch_size is None else batch_size,
            "lr": 1e-2 if lr is None else lr, "lr_final": None, "anneal_steps": 0, "population": None,
            "keep": None, "start": "uniform", "gradient": "full" if gradient is None else gradient,
            "keep_best": False}


def recipe(K, steps=None, batch_size=None, lr=None, name="planarflow", gradient=None):
    """Training settings for a K-layer flow in the demo; arguments given override the recipe.
    ``name="reference"`` gives the PyTorch implementation's settings (``reference_recipe``).

    Every final run uses the path-derivative gradient (path_gradient.py): the same expected
    gradient with the score term's noise dropped, which lets the KL keep falling near the
    optimum where the full gradient's noise holds it up (``gradient="full"`` puts it back).

    Deep flows (K > 16): a population of 4 candidates, 512 samples each, trains for 2500 steps
    (the learning rate decaying from 3e-2 to 3e-3, β annealed from 0.01 to 1 over the first
    1875 so that the flow spreads over every mode of U1 and U4 before it commits); the best is
    refined in one run of 5000 steps on batches of 1024 (2e-2 → 3e-5, β = 1). Why a population:
    a single run's KL is a draw, and one in eight of U3's and U4's K = 32 runs (7500 steps, the
    previous recipe) ended above 0.01 nats — a stray filament that takes thousands of steps to
    repair, or a slow settling; run longer, single runs did not get safer (10 000 steps: 2 of 24
    still above, one at 0.026), while the best of four after the annealing left none of 24 above
    (seeds 0–11). The candidates need 512 samples, not 256: with 256, U1's two lobes ended
    unevenly weighted in 3 of 12 seeds (KL up to 0.016). It costs about 1.4–1.5 times the single
    run (measured on one core: population 6.5–8.1 s and refinement 6.7–8.3 s for U4, against
    10.8 s for the 7500-step run): at K = 32 a step's cost grows with its samples, so four flows
    of 512 cost about as much as one of 1024 for twice the steps.

    Shallower flows (K ≤ 16) have several local optima of very different quality (U3 with
    K = 2: KL 0.70, 0.75 or 0.95 depending on the start), so they first train a population of
    candidates at once — 32 for K ≤ 2, 16 otherwise, 256 samples each, the learning rate
    decaying from 5e-2 to 3e-3 so that each settles in its basin, β annealed over the first
    third for K > 2 (annealing sends U3 with K = 2 to worse optima, so K ≤ 2 starts at β = 1).
    The best basins are slow ones: U3's with K = 2 needs a nearly linear second layer (small w,
    |û| ≈ 13), and its candidates still rank behind those of a worse basin after 600 steps. So
    the best few — 8 of 32 for K ≤ 2, 4 of 16 otherwise, ranked by their loss over the last tenth
    of the steps — train on (2000 steps for K ≤ 2, 3000 otherwise; 5e-2 → 2.5e-3), and the best of
    them is refined in a single run (batches of 1024, 1e-2 → 2e-4, β = 1; 3000 steps for K ≤ 2,
    5000 otherwise). Populations are cheap: 32 flows of K = 2 cost a few single steps, 8 flows
    little more than one (the benchmark's population lines) — most of a small flow's step is per
    call, not per sample.

    How these fare, seed by seed, against the PyTorch implementation's recipe: docs/kl-vs-k.md's
    tables, printed by python -m planarflow experiment (``--seeds``, ``--gradient full`` to compare).

    ``steps`` sets the final run's steps (the populations' scale with it), ``batch_size`` its
    batch, ``lr`` its initial learning rate (the populations' is 5·lr, 1.5·lr for K > 16), ``gradient``
    its gradient.
    """
    if name == "reference":
        return reference_recipe(K, steps, batch_size, lr, gradient)
    gradient = "path" if gradient is None else gradient
    batch_size = 1024 if batch_size is None else batch_size
    if K > 16:
        final = 5000 if steps is None else steps
        first = max(1, round(2500 * final / 5000))
        lr = 2e-2 if lr is None else lr
        return {"steps": final, "batch_size": batch_size, "lr": lr, "lr_final": 1.5e-3 * lr, "gradient": gradient,
                "anneal_steps": 0, "population": 4, "population_steps": first,
                "population_batch": min(512, batch_size), "population_lr": 1.5 * lr, "population_lr_final": 0.15 * lr,
                "population_anneal_steps": max(1, round(0.75 * first)), "keep": None}
    lr = 1e-2 if lr is None else lr
    default = 3000 if K <= 2 else 5000
    final = default if steps is None else steps
    scale = final / default

    def scaled(n):
        return max(1, round(n * scale))

    first = scaled(600 if K <= 2 else 1000)
    return {"steps": final, "batch_size": batch_size, "lr": lr, "lr_final": 0.02 * lr, "gradient": gradient,
            "anneal_steps": 0, "population": 32 if K <= 2 else 16, "population_steps": first,
            "population_batch": min(256, batch_size), "population_lr": 5 * lr,
            "population_lr_final": 0.3 * lr, "population_anneal_steps": 0 if K <= 2 else max(1, first // 3),
            "keep": 8 if K <= 2 else 4, "keep_steps": scaled(2000 if K <= 2 else 3000), "keep_lr": 5 * lr,
            "keep_lr_final": 0.25 * lr}


def stages(rec):
    """A recipe's training stages as text: "32×600 + 8×3000 + 3000" (candidates × steps, the
    best few × steps, then the final run's steps)."""
    text = f"{rec['population']}×{rec['population_steps']} + " if rec["population"] else ""
    text += f"{rec['keep']}×{rec['keep_steps']} + " if rec["keep"] else ""
    return text + str(rec["steps"])


def recipe_summary(Ks=range(1, 65), name="planarflow"):
    """One line per range of K that shares a recipe's shape: stages, learning rates, annealing,
    the final run's gradient."""
    lines, previous = [], None
    for K in Ks:
        rec = recipe(K, name=name)
        key = (stages(rec), rec["lr"], rec["lr_final"], rec["batch_size"], rec["anneal_steps"],
               rec.get("population_lr"), rec.get("population_anneal_steps"), rec["gradient"])
        if previous is not None and key == previous[1]:
            previous[0][1] = K
            continue
        previous = ([K, K], key)
        lines.append(previous)
    out = []
    for (lo, hi), (st, lr, lr_final, batch, anneal, pop_lr, pop_anneal, gradient) in lines:
        ks = f"K = {lo}" if lo == hi else f"K = {lo}–{hi}"
        text = f"{ks}: steps {st}, final run lr {lr:g}" + (f" → {lr_final:g}" if lr_final else " constant")
        text += f", batch {batch}, {gradient} gradient"
        text += f", β annealed over {anneal} steps" if anneal else ""
        text += f"; candidates' lr {pop_lr:g}" if pop_lr else ""
        text += f", β annealed over their first {pop_anneal} steps" if pop_anneal else ""
        out.append(text)
    return out


KL_VS_K = (1, 2, 4, 8, 16, 32, 64)
REFERENCE_KS = (2, 8, 32)          # the K the PyTorch implementation was written for
