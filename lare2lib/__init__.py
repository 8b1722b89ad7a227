"""lare2lib: latent reconstruction error and friends for detecting diffusion-generated images."""

__version__ = "0.1.0"

