"""EM for the linear mixed model with latent subgroups: data, simulation, fit, inference."""
from .data import Panel, check_panel, dietox_panel, from_long, load_dietox, load_wage_panel
from .fit import EMConfig, EMResult, EmptyClassError, fit_em, loglik, maximize_direct
from .model import LatentLMM, fit_latent_lmm
from .params import Params
from .simulate import SimConfig, SimData, simulate

__all__ = ["Panel", "check_panel", "dietox_panel", "from_long", "load_dietox", "load_wage_panel", "EMConfig", "EMResult",
           "EmptyClassError", "Params", "fit_em", "loglik", "maximize_direct", "LatentLMM", "fit_latent_lmm", "SimConfig", "SimData", "simulate"]
