"""A tiny CLIP text side without downloads: a byte-level BPE tokenizer folder and a text encoder.

Used by the tiny Stable Diffusion pipeline of :mod:`lare2lib.models.tiny`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["TINY_TEXT_DIM", "TINY_MAX_LENGTH", "TOKENIZER_WORDS", "write_tiny_clip_tokenizer", "tiny_text_encoder"]

TINY_TEXT_DIM = 32
"""Hidden size of the tiny CLIP text encoder = the tiny UNet's ``cross_attention_dim``."""
TINY_MAX_LENGTH = 77
"""SD's CLIP context length, kept: prompts are padded to it exactly as in SD."""
TOKENIZER_WORDS = ("a", "photo", "of", "an", "cat", "coffee", "the")
"""Words that get whole-word BPE merges in the tiny vocabulary (others fall back to bytes)."""


# -- a CLIP tokenizer without downloads -------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table (BPE runs on these characters)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def write_tiny_clip_tokenizer(
    path: str | os.PathLike[str], words: tuple[str, ...] = TOKENIZER_WORDS
) -> Path:
    """A valid CLIP byte-level BPE tokenizer folder: vocab.json, merges.txt, special tokens.

    Vocabulary as CLIP builds it: the 256 byte characters, the same with the end-of-word
    marker ``</w>``, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.
    Merges join each word in ``words`` left to right, so "a photo of a cat" tokenises to whole
    words and anything else to single characters.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = list(_bytes_to_unicode().values())
    vocab_tokens = base + [c + "</w>" for c in base]
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            if pieces[0] not in vocab_tokens:
                vocab_tokens.append(pieces[0])
    merges = list(dict.fromkeys(merges))
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (path / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": TINY_MAX_LENGTH,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )
    return path


def tiny_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> Any:
    """A randomly initialised 2-layer CLIP text encoder of width :data:`TINY_TEXT_DIM`."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TINY_TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_MAX_LENGTH,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)
