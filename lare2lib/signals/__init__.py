"""Per-image signals of a reference diffusion model: LaRE (one noisy step), DIRE (DDIM
inversion and reconstruction), and the batched extraction driver that stores them.
"""
