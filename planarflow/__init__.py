"""planarflow: planar normalizing flows (Rezende & Mohamed 2015) fitted by reverse KL, in NumPy.

The layout is the lesson at the top, the machinery in ``tools/``:

    reference.py     THE METHOD, in one file a teacher can copy: û and its backward, the planar
                     layer, the flow, U₁, reverse KL and its gradient, Adam, the training loop.
                     Imports NumPy only. Read it first; it is the code that runs.
    targets.py       U₁–U₄ of the paper's Table 1, their gradients, the box wall.
    inverse.py       the numerical inverse of the flow, hence its exact density anywhere.
    diagnostics.py   log Z by quadrature, the exact KL, importance sampling and its PSIS k̂.
    gradcheck.py     central differences, the check behind every gradient.

    fused.py         the fast engine: reference.py's arithmetic arranged for speed, chosen by
                     fit(..., engine="fused") and tied to reference.py by tests to rounding.

    tools/           around the lesson, not part of it: the checked public functions (api.py),
                     argument checks (validation.py), files (io.py), fit with populations and
                     checkpoints (training.py), the Figure 3 runner (experiment.py), pictures,
                     progress lines, the benchmark, the exercises and the README refresher.

    experiment.py, benchmark.py, exercises.py, refresh_readme.py
                     only the names of the commands ``python -m planarflow.<name>``; their code
                     is in tools/.

Why a subpackage: the lesson files import NumPy and each other, nothing else; tools/ imports the
lesson, never the other way round. So ``ls planarflow/`` and the import graph both show the
method apart from what serves it, and copying the lesson needs nothing from tools/.

``import planarflow as pf`` gives the lesson's functions with their arguments checked
(tools/api.py): each checks, then calls the plain function of the same name, looked up when
called — so an edit of reference.py changes what pf.reverse_kl, pf.sample, pf.log_prob,
pf.kl_divergence and a default pf.fit compute.
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



class _CallableModule(_types.ModuleType):
    """``planarflow.inverse`` is the lesson's module (``inverse.solve_alpha``, ``inverse.log_prob``,
    what ``import planarflow.inverse as inv`` gives) and, called as ``planarflow.inverse(params, y)``,
    the checked function tools.api.inverse — one name for the idea, as the README uses both."""

    def __call__(self, params, y):
        return _api.inverse(params, y)


inverse.__class__ = _CallableModule

__version__ = "0.3.0"

__all__ = [
    "Adam", "EstimatedLogZWarning", "FitWarning", "Gaussian", "Mode", "ModeNotFound",
    "NumericalGradientWarning", "Posterior", "Target", "TrainingDiverged", "UnreliablePosteriorWarning",
    "check_target", "find_mode", "fit", "flow_backward", "flow_forward", "get_target",
    "importance_log_z", "init_params", "inverse", "kl_divergence", "load", "log_partition",
    "log_prob", "numerical_gradient", "planar_backward", "planar_forward", "posterior", "psis",
    "rel_error", "reverse_kl", "sample", "save", "u_hat", "u_hat_backward", "u_hat_forward",
]
