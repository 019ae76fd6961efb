"""1D NMR denoising trained from repeated acquisitions (notebook 05, `python -m lib.nmr`).

Scope: simulated and measured replicate series, their preprocessing, a residual 1D U-Net trained
on them, its evaluation against classical methods, and the user path that denoises a series.

simulate: multi-acquisition data sets; fileio: raw FIDs and spectra via nmrglue (jcamp: JCAMP-DX
read with bounded expansion; limits: the point limit and header checks before data are read); series: a user's
replicate series (read, checked, phased); preprocess: alignment, rescaling, masks, noise/SNR/T,
pseudo truth; unet: residual 1D U-Net; losses; train: two-stage training; recipe: every setting's
default, the smoke/cpu/paper presets and the builder the notebook and the command line share;
modelfile: model files and their cards; metrics; baselines: classical methods and co-addition (lowrank: Cadzow's low-rank Hankel denoising);
oracle: the line fit that knows the simulated lines; lineshape: Voigt fits of measured lines;
evaluate: simulated tables, goals and ablations; realdata: measured FIDs plus added noise;
finetune: fine-tuning on one series and when to; scoring: scores against a series' own
reference; denoiser: `denoise_series`, the user path; report: its plot and output files;
__main__: the command line (train, denoise, make-series).
"""
