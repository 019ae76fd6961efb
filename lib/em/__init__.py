"""EM for the linear mixed model with latent subgroups: data, simulation, fit, inference."""

from .config import EMConfig, EmptyClassError
from .estep import loglik
from .fit import EMResult, fit_em
from .loaders import (
    dietox_frame,
    dietox_panel,
    load_bodyweight,
    load_cornwell_rupert,
    load_dietox,
    load_empluk,
    load_wage_panel,
)
from .model import LatentLMM, fit_latent_lmm
from .panel import Panel, check_panel, from_long
from .params import Params
from .polish import maximize_direct
from .simulate import PanelSimConfig, SimData, simulate

__all__ = [
    "EMConfig",
    "EMResult",
    "EmptyClassError",
    "LatentLMM",
    "Panel",
    "PanelSimConfig",
    "Params",
    "SimData",
    "check_panel",
    "dietox_frame",
    "dietox_panel",
    "fit_em",
    "fit_latent_lmm",
    "from_long",
    "load_bodyweight",
    "load_cornwell_rupert",
    "load_dietox",
    "load_empluk",
    "load_wage_panel",
    "loglik",
    "maximize_direct",
    "simulate",
]
