"""Stable Diffusion v1.5's exact architecture with random weights, for costing without a download.

The configs below are those of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (``unet``, ``vae``
and ``text_encoder`` ``config.json``), written out so the repository can build the same networks
offline: same layers, parameter counts and FLOPs, random weights. What a forward costs does not
depend on the weights, so :mod:`bench.bench_lare` (``--model sd15-random``) prices LaRE, DIRE and
the released loop at the paper's model size on any machine. Maps computed with these weights mean
nothing; only their cost does.

Parameter counts (checked by the tests): UNet 859,520,964; VAE 83,653,863 (SD 2.1's VAE is the
same architecture); CLIP ViT-L/14 text encoder 123,060,480.
"""

from __future__ import annotations

import tempfile
from typing import Any

__all__ = ["SD15_UNET", "SD_VAE", "CLIP_L_TEXT", "SD15_PARAMETERS", "sd15_random_components"]

SD15_UNET: dict[str, Any] = {
    "sample_size": 64,  # 512 px / the VAE's factor 8
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,  # CLIP ViT-L/14's text width
    "attention_head_dim": 8,  # diffusers' historical name: SD1 has 8 *heads* per attention
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}
"""``UNet2DConditionModel`` of SD v1.5 (v1.4 has the same architecture)."""

SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],  # three ×2 downsamplings: f = 8
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
    "scaling_factor": 0.18215,  # 1 / std of SD1's first-stage latents
}
"""``AutoencoderKL`` of SD v1.x and of SD 2.1's VAE."""

CLIP_L_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
"""``CLIPTextModel`` of OpenAI CLIP ViT-L/14 (SD v1's text encoder)."""

SD15_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
"""Parameter counts of the released checkpoints, which the configs above must reproduce."""


def sd15_random_components(seed: int = 0, device: str = "cpu") -> Any:
    """:class:`~lare2lib.models.ldm.LDMComponents` of SD v1.5's architecture, random weights.

    The tokenizer is a small CLIP BPE tokenizer written to a temporary folder (the real
    vocabulary is a download); prompt tokenisation is a negligible, cached cost in LaRE.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from lare2lib.models.ldm import LDMComponents
    from lare2lib.models.schedulers import sd_training_scheduler
    from lare2lib.models.tiny_clip import write_tiny_clip_tokenizer

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT))
    finally:
        torch.random.set_rng_state(state)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(folder)))
    modules = [module.to(device).eval().requires_grad_(False) for module in (unet, vae, text_encoder)]
    return LDMComponents(name="sd15-random", vae=modules[1], unet=modules[0], scheduler=sd_training_scheduler(),
                         text_encoder=modules[2], tokenizer=tokenizer)
