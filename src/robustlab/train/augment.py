"""Batched data augmentation in torch (the usual CIFAR recipe: padded random crop + horizontal flip)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` pixels, then random horizontal flip, per sample.

    Args:
        x: Images, any dtype.
        generator: Source of randomness (offsets and flips).
        pad: Padding on each side; crops are taken at offsets 0..2·pad.
        flip: Flip each image horizontally with probability 1/2.

    Shape:
        x: (B, C, H, W) → (B, C, H, W), same dtype.
    """
    b, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None].expand(b, c, h, w + 2 * pad)
        x = padded.gather(2, rows)  # (B, C, H, W+2p)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, cols)  # (B, C, H, W)
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x
