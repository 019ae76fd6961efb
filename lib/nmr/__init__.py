"""1D NMR denoising trained from repeated acquisitions (notebook 05).

simulate: multi-acquisition data sets; io: real spectra via nmrglue; preprocess: alignment,
rescaling, masks, noise/SNR/T, pseudo truth; unet: residual 1D U-Net; losses; train;
metrics; baselines: classical methods and co-addition; evaluate: tables and ablations.
"""
