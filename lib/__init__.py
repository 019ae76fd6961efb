"""The workbook's package: three topics over one shared core.

core: paths, typed settings, profiles, run records, atomic writes, checkpoint state;
longtail: notebooks 01-04 (data, models, train, evaluate); nmr: notebook 05; em: notebook 06;
run: every notebook through papermill. The layer map is in docs/index.md.
"""
