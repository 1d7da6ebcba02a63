"""planarflow: planar normalizing flows (Rezende & Mohamed 2015) fitted by reverse KL, in NumPy.

Reading order: numerics → layer → flow → targets → objective → optim → train → inverse →
diagnostics; then fused (the training step's fast arrangement of flow.py), gradcheck, io,
experiment (the Figure 3 runner) and plotting (the only module that imports matplotlib).
"""

from .diagnostics import importance_log_z, kl_divergence, log_partition
from .flow import flow_backward, flow_forward, init_params, sample
from .gradcheck import numerical_gradient, rel_error
from .inverse import inverse, log_prob
from .io import load, save
from .layer import planar_backward, planar_forward, u_hat, u_hat_backward, u_hat_forward
from .objective import reverse_kl
from .optim import Adam
from .targets import Gaussian, get_target
from .train import TrainingDiverged, fit

__version__ = "0.1.0"

__all__ = [
    "Adam", "Gaussian", "TrainingDiverged", "fit", "flow_backward", "flow_forward", "get_target",
    "importance_log_z", "init_params", "inverse", "kl_divergence", "load", "log_partition",
    "log_prob", "numerical_gradient", "planar_backward", "planar_forward", "rel_error",
    "reverse_kl", "sample", "save", "u_hat", "u_hat_backward", "u_hat_forward",
]
