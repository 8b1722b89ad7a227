"""The mini world: shipped photos cut into crops, the reference autoencoders and latent diffusion
models trained on them, their generated sets, and the world's quality numbers.
"""
