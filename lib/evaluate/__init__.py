"""Evaluation on every test distribution and test-time adaptation to unknown label distributions."""
from .metrics import GROUPS, accuracy_report, per_class_accuracy, results_table
from .testtime import (AdaptResult, StabilityConfig, adjust_logits, entropy_bits, estimate_prior_em,
                       maximize_stability)

__all__ = [n for n in dir() if not n.startswith("_")]
