"""Evaluation on every test distribution and test-time adaptation to unknown label distributions."""

from ..accuracy import GROUPS, accuracy_report, per_class_accuracy, results_table
from .agnostic import ADAPTATIONS, adapt, calibration_prior, evaluate_all, wide_table
from .bank import FeatureBank, build_bank, expert_features
from .calibrate import Calibration, fit_bcts
from .load import find_checkpoints, load_for_evaluation
from .sliders import normalize_pref, preference_report, slider_view
from .testtime import (
    AdaptResult,
    StabilityConfig,
    adjust_logits,
    entropy_bits,
    estimate_prior_em,
    label_shift_test,
    maximize_stability,
)

__all__ = [n for n in dir() if not n.startswith("_")]
