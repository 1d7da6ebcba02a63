"""planarflow: planar normalizing flows (Rezende & Mohamed 2015) fitted by reverse KL, in NumPy.

Reading order: numerics → layer → flow → targets → objective → optim → train; then gradcheck,
io, and the plotting code (the only module that imports matplotlib).
"""

from .flow import flow_backward, flow_forward, init_params, sample
from .gradcheck import numerical_gradient, rel_error
from .io import load, save
from .layer import planar_backward, planar_forward, u_hat, u_hat_backward, u_hat_forward
from .objective import reverse_kl
from .optim import Adam
from .targets import Gaussian, get_target
from .train import TrainingDiverged, fit

__version__ = "0.1.0"

__all__ = [
    "Adam", "Gaussian", "TrainingDiverged", "fit", "flow_backward", "flow_forward", "get_target",
    "init_params", "load", "numerical_gradient", "planar_backward", "planar_forward", "rel_error",
    "reverse_kl", "sample", "save", "u_hat", "u_hat_backward", "u_hat_forward",
]
