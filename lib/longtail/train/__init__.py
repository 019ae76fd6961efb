"""Training: settings (config), data (data), the loop (loop), evaluation during training (evaluation),
logit-adjusted expert losses, scalarizations, checkpoints and DDP."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import DATASET_DEFAULTS, TrainConfig, check_config, config_for, lr_at, model_config
from .data import TrainData, load_data
from .evaluation import accuracy_table, evaluate, predict_logits, preference_sweep
from .loop import FitResult, fit
from .losses import (
    METHODS,
    balpoe_taus,
    expert_adjustments,
    expert_losses,
    mixture_loss,
    sade_adjustments,
    target_priors,
    training_loss,
)
from .scalarize import SCALARIZATIONS, sample_preferences, scalarize

__all__ = [n for n in dir() if not n.startswith("_")]
