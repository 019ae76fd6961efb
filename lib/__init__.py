"""Shared package of the long-tail workbook: data, models, training, evaluation, NMR, EM."""
