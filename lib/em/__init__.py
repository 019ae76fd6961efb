"""EM for the linear mixed model with latent subgroups: data, simulation, fit, inference."""
from .data import Panel, check_panel, dietox_panel, from_long, load_dietox
from .fit import EMConfig, EMResult, EmptyClassError, fit_em, loglik, maximize_direct
from .params import Params
from .simulate import SimConfig, SimData, simulate

__all__ = ["Panel", "check_panel", "dietox_panel", "from_long", "load_dietox", "EMConfig", "EMResult",
           "EmptyClassError", "Params", "fit_em", "loglik", "maximize_direct", "SimConfig", "SimData", "simulate"]
