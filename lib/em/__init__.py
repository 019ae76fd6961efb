"""EM for the linear mixed model with latent subgroups: data, simulation, fit, inference."""

from .data import (
    Panel,
    check_panel,
    dietox_frame,
    dietox_panel,
    from_long,
    load_cornwell_rupert,
    load_dietox,
    load_wage_panel,
)
from .fit import EMConfig, EmptyClassError, EMResult, fit_em, loglik, maximize_direct
from .model import LatentLMM, fit_latent_lmm
from .params import Params
from .simulate import SimConfig, SimData, simulate

__all__ = [
    "EMConfig",
    "EMResult",
    "EmptyClassError",
    "LatentLMM",
    "Panel",
    "Params",
    "SimConfig",
    "SimData",
    "check_panel",
    "dietox_frame",
    "dietox_panel",
    "fit_em",
    "fit_latent_lmm",
    "from_long",
    "load_cornwell_rupert",
    "load_dietox",
    "load_wage_panel",
    "loglik",
    "maximize_direct",
    "simulate",
]
