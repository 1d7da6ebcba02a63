"""planarflow: planar normalizing flows (Rezende & Mohamed 2015) fitted by reverse KL, in NumPy.

    import numpy as np, planarflow as pf
    target = pf.Target(2, energy=lambda z: 0.5 * ((z - 3.0) ** 2).sum(axis=1))   # U = −log p + const
    params, history = pf.fit(target, K=8, steps=2000, batch_size=512, rng=0)
    post = pf.posterior(params, target, 20_000, rng=1)     # PSIS-weighted means, sds, quantiles, k̂
    print(post)                                            # k̂ ≤ 0.7: the estimates can be trusted

A target is any object with ``dim`` (required: never assumed), ``energy(z) -> (N,)`` for points
z of shape (N, dim) — U = −log p up to a constant — and optionally ``grad(z) -> (N, dim)`` or
``energy_and_grad(z) -> (U, ∇U)`` (without either: finite differences), ``log_z``, ``name``.
``pf.Target(dim, energy, grad=None)`` or ``pf.Target(dim, log_density=logp)`` builds one;
``pf.get_target("U1")`` … ``"U4"`` are the paper's. For a target of one's own, fit starts at its
mode's Laplace approximation (``pf.find_mode``); ``pf.check_target`` checks a hand gradient.

The package, read bottom to top as data flows (tests/test_layout.py keeps every import pointing down):

    reference.py     THE METHOD, in one file a teacher can copy (and open as a notebook): û and its
                     backward, the planar layer, the flow, U₁, reverse KL and its gradient, Adam,
                     the training loop. Imports NumPy only. Read it first; it is the code that runs.
    base.py, path_gradient.py
                     lessons beside it: a learnable base after the layers, and the path-derivative
                     gradient — each with a run that shows what it is for.
    targets.py, inverse.py, diagnostics.py, gradcheck.py, figure3.py
                     the rest of the lesson, one idea a file: U₂–U₄ and the box wall; the numerical
                     inverse, hence the exact density anywhere; log Z, the KL, importance sampling
                     and PSIS's k̂; central differences; the paper's Figure 3 from the lesson alone.
    fused.py         the fast engine: reference.py's arithmetic arranged for speed, what fit runs
                     for a target of your own (engine="auto"; engine="fused" for any target) and
                     tied to reference.py by tests to rounding.

    library/         what a researcher calls: the lesson's functions with their arguments checked
                     (api.py), fit and its run (training.py), the start at the mode (mode.py),
                     targets of one's own and check_target (target.py), numerical gradients of an
                     energy (differences.py), posterior estimates (posterior.py), argument checks
                     (validation.py), flows and checkpoints on disk (files.py), progress lines.
    lab/             the machinery around it all: the Figure 3 experiment (recipes.py, runner.py,
                     report.py, experiment.py), pictures (plotting.py), real posteriors with exact
                     answers (posteriors.py), the benchmark, the exercises, the README refresher.
    __main__.py      one command line, ``python -m planarflow COMMAND`` (``--help`` lists them).

The lesson files import NumPy and each other, nothing else; the library imports the lesson, never
the other way round; the lab imports both. So copying the lesson needs nothing else.

``import planarflow as pf`` gives the lesson's functions with their arguments checked
(library/api.py): each checks, then calls the plain function of the same name, looked up when
called — so an edit of a lesson file changes what pf.reverse_kl, pf.sample, pf.log_prob,
pf.kl_divergence and pf.fit compute.
"""

import types as _types

from . import inverse
from .library import api as _api
from .library.api import (Adam, EstimatedLogZWarning, Gaussian, find_mode, flow_backward, flow_forward,
                        get_target, importance_log_z, init_params, kl_divergence, log_partition,
                        log_prob, numerical_gradient, planar_backward, planar_forward, posterior, psis,
                        rel_error, reverse_kl, sample, u_hat, u_hat_backward, u_hat_forward)
from .library.differences import NumericalGradientWarning
from .library.files import load, save
from .library.mode import Mode, ModeNotFound
from .library.posterior import Posterior, TailWarning, UnreliablePosteriorWarning
from .library.target import Target, check_target
from .library.training import FitWarning, TrainingDiverged, fit
from .library.validation import LowPrecisionWarning



class _CallableModule(_types.ModuleType):
    """``planarflow.inverse`` is the lesson's module (``inverse.solve_alpha``, ``inverse.log_prob``,
    what ``import planarflow.inverse as inv`` gives) and, called as ``planarflow.inverse(params, y)``,
    the checked function library.api.inverse — one name for the idea, as the README uses both."""

    def __call__(self, params, y):
        return _api.inverse(params, y)


inverse.__class__ = _CallableModule

__version__ = "0.3.0"

__all__ = [
    "Adam", "EstimatedLogZWarning", "FitWarning", "Gaussian", "LowPrecisionWarning", "Mode", "ModeNotFound",
    "NumericalGradientWarning", "Posterior", "TailWarning", "Target", "TrainingDiverged", "UnreliablePosteriorWarning",
    "check_target", "find_mode", "fit", "flow_backward", "flow_forward", "get_target",
    "importance_log_z", "init_params", "inverse", "kl_divergence", "load", "log_partition",
    "log_prob", "numerical_gradient", "planar_backward", "planar_forward", "posterior", "psis",
    "rel_error", "reverse_kl", "sample", "save", "u_hat", "u_hat_backward", "u_hat_forward",
]
