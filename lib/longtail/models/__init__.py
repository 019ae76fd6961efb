"""Multi-expert long-tail models: RIDE-style backbones, cosine heads, the preference hypernetwork."""

from .backbones import ARCHS, BOTTLENECK_ARCHS, CIFAR_ARCHS, build_backbone, check_arch
from .experts import (
    INITS,
    ModelConfig,
    MultiExpertModel,
    aggregate,
    build_model,
    check_pref,
    logit_bias,
    parameter_counts,
    parameter_table,
)
from .hypernet import PreferenceHyperNet, direct_hypernet_params

__all__ = [n for n in dir() if not n.startswith("_")]
