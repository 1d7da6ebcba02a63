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

The layout is the lesson at the top, the machinery in ``tools/``:

    reference.py     THE METHOD, in one file a teacher can copy (and open as a notebook): û and its
                     backward, the planar layer, the flow, the learnable base, U₁, reverse KL and
                     its gradient, the path-derivative gradient, Adam, the training loop.
                     Imports NumPy only. Read it first; it is the code that runs.
    targets.py       U₁–U₄ of the paper's Table 1, their gradients, the box wall.
    inverse.py       the numerical inverse of the flow, hence its exact density anywhere.
    diagnostics.py   log Z by quadrature, the KL, importance sampling and its PSIS k̂.
    gradcheck.py     central differences, the check behind every gradient.
    figure3.py       the paper's Figure 3 from reference.py and targets.py alone.

    fused.py         the fast engine: reference.py's arithmetic arranged for speed, chosen by
                     fit(..., engine="fused") and tied to reference.py by tests to rounding.

    tools/           around the lesson, not part of it: the checked public functions (api.py),
                     argument checks (validation.py), files (io.py), fit with the start at the mode,
                     populations and checkpoints (training.py, mode.py), targets of one's own and
                     posterior estimates (user_targets.py, posterior.py, posteriors.py), the
                     Figure 3 runner (experiment.py), pictures, progress lines, the benchmark, the
                     exercises and the README refresher.

    experiment.py, benchmark.py, exercises.py, refresh_readme.py
                     only the names of the commands ``python -m planarflow.<name>``; their code
                     is in tools/.

Why a subpackage: the lesson files import NumPy and each other, nothing else; tools/ imports the
lesson, never the other way round. So ``ls planarflow/`` and the import graph both show the
method apart from what serves it, and copying the lesson needs nothing from tools/.

``import planarflow as pf`` gives the lesson's functions with their arguments checked
(tools/api.py): each checks, then calls the plain function of the same name, looked up when
called — so an edit of reference.py changes what pf.reverse_kl, pf.sample, pf.log_prob,
pf.kl_divergence and pf.fit compute.
"""

import types as _types

from . import inverse
from .tools import api as _api
from .tools.api import (Adam, EstimatedLogZWarning, Gaussian, find_mode, flow_backward, flow_forward,
                        get_target, importance_log_z, init_params, kl_divergence, log_partition,
                        log_prob, numerical_gradient, planar_backward, planar_forward, posterior, psis,
                        rel_error, reverse_kl, sample, u_hat, u_hat_backward, u_hat_forward)
from .tools.io import load, save
from .tools.mode import Mode, ModeNotFound
from .tools.posterior import Posterior, UnreliablePosteriorWarning
from .tools.training import FitWarning, TrainingDiverged, fit
from .tools.user_targets import NumericalGradientWarning, Target, check_target
from .tools.validation import LowPrecisionWarning



class _CallableModule(_types.ModuleType):
    """``planarflow.inverse`` is the lesson's module (``inverse.solve_alpha``, ``inverse.log_prob``,
    what ``import planarflow.inverse as inv`` gives) and, called as ``planarflow.inverse(params, y)``,
    the checked function tools.api.inverse — one name for the idea, as the README uses both."""

    def __call__(self, params, y):
        return _api.inverse(params, y)


inverse.__class__ = _CallableModule

__version__ = "0.3.0"

__all__ = [
    "Adam", "EstimatedLogZWarning", "FitWarning", "Gaussian", "LowPrecisionWarning", "Mode", "ModeNotFound",
    "NumericalGradientWarning", "Posterior", "Target", "TrainingDiverged", "UnreliablePosteriorWarning",
    "check_target", "find_mode", "fit", "flow_backward", "flow_forward", "get_target",
    "importance_log_z", "init_params", "inverse", "kl_divergence", "load", "log_partition",
    "log_prob", "numerical_gradient", "planar_backward", "planar_forward", "posterior", "psis",
    "rel_error", "reverse_kl", "sample", "save", "u_hat", "u_hat_backward", "u_hat_forward",
]
