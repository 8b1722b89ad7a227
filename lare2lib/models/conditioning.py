"""Class-prompt conditioning for the mini world's latent UNets.

Stable Diffusion conditions its UNet on CLIP text embeddings of a prompt such as
"a photo of a tabby cat" (LaRE uses the ImageNet class name). The mini world has no text
encoder, so it stands in with one learned embedding per photo category, passed to the same
``UNet2DConditionModel`` through ``encoder_hidden_states``. The prompt parsing below accepts
the same three prompt policies LaRE uses, so code written for SD runs unchanged:

* ``"a photo of a {class}"`` → that category's embedding;
* ``"a photo"`` or ``""``    → the *null* embedding (also the classifier-free-guidance
  unconditional branch, learned by dropping the class in 10 % of training steps).
"""

from __future__ import annotations

import re

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["ARTICLES", "ClassPromptEncoder", "class_prompt"]

_PROMPT = re.compile(r"^a photo of an? (?P<name>.+)$")


ARTICLES = ("a", "grammatical")
"""``a``: "a photo of a {name}" for every class, as the release writes it ("a photo of a
apple"; 110 ImageNet classes start with a vowel); ``grammatical``: "an" before a vowel."""


def class_prompt(name: str, article: str = "a") -> str:
    """The LaRE prompt for a class name: "a photo of a {name}" (see :data:`ARTICLES`)."""
    if article not in ARTICLES:
        raise ValueError(f"unknown prompt article {article!r}; valid: {list(ARTICLES)}")
    word = "an" if article == "grammatical" and name[:1].lower() in "aeiou" else "a"
    return f"a photo of {word} {name}"


class ClassPromptEncoder(ModelMixin, ConfigMixin):
    """Learned prompt embeddings: ``(B,)`` prompts → ``(B, seq_len, dim)`` hidden states.

    Index 0 is the null prompt; index ``i + 1`` is ``class_names[i]``. ``seq_len`` tokens per
    prompt (a learned sequence, not one vector) give the UNet's cross-attention something to
    attend over, as CLIP's 77 tokens do in SD.
    """

    @register_to_config
    def __init__(self, class_names: tuple[str, ...] = ("photo",), dim: int = 64, seq_len: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(len(class_names) + 1, seq_len * dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.class_names)

    def prompt_to_index(self, prompt: str) -> int:
        """0 for "" / "a photo"; the class index for "a photo of a {class}"; else a clear error."""
        text = prompt.strip().lower()
        if text in ("", "a photo"):
            return 0
        match = _PROMPT.match(text)
        names = [n.lower() for n in self.class_names]
        if match and match.group("name") in names:
            return names.index(match.group("name")) + 1
        raise ValueError(
            f"prompt {prompt!r} names no class of this model; use '', 'a photo' or "
            f"'a photo of a {{class}}' with class in {list(self.class_names)}"
        )

    def indices(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([self.prompt_to_index(p) for p in prompts], dtype=torch.long,
                            device=self.embedding.weight.device)

    def forward(self, class_index: torch.Tensor) -> torch.Tensor:
        """``(B,)`` long → ``(B, seq_len, dim)``."""
        flat = self.embedding(class_index)
        return flat.view(class_index.shape[0], self.config.seq_len, self.config.dim)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self(self.indices(prompts))
