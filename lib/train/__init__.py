"""Training: logit-adjusted expert losses, scalarizations, the loop, checkpoints and DDP."""
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .loop import (DATASET_DEFAULTS, FitResult, TrainConfig, TrainData, accuracy_table, check_config, config_for,
                   evaluate, fit, load_data, lr_at, model_config, predict_logits, preference_sweep)
from .losses import (METHODS, balpoe_taus, expert_adjustments, expert_losses, mixture_loss, sade_adjustments,
                     target_priors, training_loss)
from .scalarize import SCALARIZATIONS, sample_preferences, scalarize

__all__ = [n for n in dir() if not n.startswith("_")]
