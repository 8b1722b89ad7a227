"""EGRE's trainable blocks: ESR and ECR (LaRE², Luo et al. 2024) and the LaRE-only CNN baseline.

* :class:`SpatialRefinement` (ESR): CLIP's attention pool written out, one query (the mean
  token), a per-head additive bias on the attention logits from the LaRE map pooled to the token
  grid (a 1×1 conv, 4 → 8 channels); ``x_s = LayerNorm(query + dropout(out))``, the query
  token being the mean token plus row 0 of the positional embedding, as released.
* :class:`ChannelRefinement` (ECR): a squeeze-and-excite gate from the globally pooled map,
  ``w = sigmoid(W2 relu(W1 GAP(LaRE)))`` (4 → 128 → C, no biases); ``x_c = GAP(F) ⊙ w``.
* :class:`LareCNN`: a small ResNet on the map alone (the ``lare_cnn`` ablation row; released:
  [2, 2, 2] basic blocks of 16/32/64 channels with 3×3 shortcut convolutions).

The detector that combines them with a backbone: :class:`lare2lib.detectors.egre.EgreDetector`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SpatialRefinement", "ChannelRefinement", "BasicBlock", "LareCNN"]


# -- the two refinement blocks ----------------------------------------------------------------


class SpatialRefinement(nn.Module):
    """ESR: single-query multi-head attention over feature tokens, biased per head by the map.

    Args:
        channels: C, the width of the feature map (1024 for CLIP ResNet-50's layer3).
        grid: (H, W) of the feature map; the positional embedding has ``1 + H·W`` rows.
        map_channels: Channels of the error map (4: SD's latent).
        heads: Attention heads (released: 8); one bias map per head.
        inner: Width of q, k, v (released: 512 = C / 2); head width = inner / heads.
        dropout: On the attention weights and on the output (released: 0.1).
    """

    def __init__(self, channels: int, grid: tuple[int, int], map_channels: int = 4,
                 heads: int = 8, inner: int | None = None, dropout: float = 0.1):
        super().__init__()
        inner = inner or channels // 2
        if inner % heads:
            raise ValueError(f"ESR: inner width {inner} is not divisible by {heads} heads")
        self.grid = (int(grid[0]), int(grid[1]))
        self.heads, self.head_dim = heads, inner // heads
        tokens = 1 + self.grid[0] * self.grid[1]
        self.bias = nn.Conv2d(map_channels, heads, kernel_size=1)
        self.position = nn.Parameter(torch.randn(tokens, channels) / channels ** 0.5)
        self.q, self.k, self.v = (nn.Linear(channels, inner) for _ in range(3))
        for projection in (self.q, self.k, self.v):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)
        self.out = nn.Linear(inner, channels)
        nn.init.xavier_uniform_(self.out.weight)  # as released (PyTorch's default is kaiming-uniform)
        nn.init.zeros_(self.out.bias)
        self.attention_dropout = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(channels)

    def attention_bias(self, error_map: torch.Tensor) -> torch.Tensor:
        """``(B, heads, 1 + H·W)``: the map pooled to the grid, 1×1 conv, mean column prepended."""
        pooled = F.adaptive_avg_pool2d(error_map, self.grid)            # (B, Cm, H, W)
        bias = self.bias(pooled).flatten(2)                             # (B, heads, H·W)
        return torch.cat([bias.mean(dim=2, keepdim=True), bias], dim=2)

    def forward(self, features: torch.Tensor,
                error_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` features, ``(B, Cm, h, w)`` map → ``x_s (B, C)`` and the attention
        weights ``(B, heads, 1 + H·W)`` of the single query (column 0: the mean token)."""
        batch, channels, height, width = features.shape
        if (height, width) != self.grid:
            raise ValueError(f"ESR was built for a {self.grid} token grid, got {(height, width)}; "
                             "the crop size fixes the grid")
        tokens = features.flatten(2).transpose(1, 2)                    # (B, H·W, C)
        mean = tokens.mean(dim=1, keepdim=True)                         # (B, 1, C)
        x = torch.cat([mean, tokens], dim=1) + self.position            # (B, L, C), L = 1 + H·W
        length = x.shape[1]
        q = self.q(x[:, :1]).view(batch, 1, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)     # (B, heads, 1, L)
        logits = logits + self.attention_bias(error_map)[:, :, None, :]
        weights = logits.softmax(dim=-1)
        out = (self.attention_dropout(weights) @ v).transpose(1, 2).reshape(batch, -1)
        # the residual is the query token itself (mean + its positional row), as in CLIP's pool
        x_s = self.norm(x[:, 0] + self.output_dropout(self.out(out)))
        return x_s, weights[:, :, 0]


class ChannelRefinement(nn.Module):
    """ECR: a channel gate from the globally pooled error map, on the pooled features.

    ``w = sigmoid(W2 · relu(W1 · GAP(map)))`` with W1: ``map_channels → hidden``, W2:
    ``hidden → channels``, no biases (released: 4 → 128 → 1024); ``x_c = GAP(F) ⊙ w``.
    """

    def __init__(self, channels: int, map_channels: int = 4, hidden: int = 128):
        super().__init__()
        self.squeeze = nn.Linear(map_channels, hidden, bias=False)
        self.excite = nn.Linear(hidden, channels, bias=False)

    def gate(self, error_map: torch.Tensor) -> torch.Tensor:
        """``(B, channels)`` gate values in (0, 1)."""
        return torch.sigmoid(self.excite(F.relu(self.squeeze(error_map.mean(dim=(2, 3))))))

    def forward(self, features: torch.Tensor,
                error_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_c (B, C)`` and the gate ``w (B, C)``."""
        gate = self.gate(error_map)
        return features.mean(dim=(2, 3)) * gate, gate


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3×3 convs, BN, identity or a projection shortcut).

    ``shortcut_kernel``: the projection's kernel when the shape changes (ResNet: 1; the released
    LaRE-only CNN: 3, padding 1).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut_kernel: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, shortcut_kernel, stride, shortcut_kernel // 2, bias=False),
            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class LareCNN(nn.Module):
    """The LaRE-only baseline: a small ResNet on the map alone, global average pool, ``Linear → 2``.

    A 3×3 stem to ``width``, then one stage per entry of ``blocks`` (stage i: ``width · 2^i``
    channels, stride 2 from the second stage on). Defaults are the release's: [2, 2, 2] blocks of
    16/32/64 channels with 3×3 shortcuts. Before v2 this project used ``width=32,
    blocks=(1, 1, 1), shortcut_kernel=1``. No image pixels are seen.
    """

    def __init__(self, map_channels: int = 4, width: int = 16, blocks: tuple[int, ...] = (2, 2, 2),
                 shortcut_kernel: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(map_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for stage, count in enumerate(blocks):
            cout = width * 2 ** stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(cin, cout, stride, shortcut_kernel))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 2)

    def forward(self, error_map: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(error_map)).mean(dim=(2, 3)))
