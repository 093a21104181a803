"""ResNet for CIFAR (He et al. 2016, §4.2), compatible with the akamaster checkpoints.

References:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
    Idelbayev. "Proper ResNet Implementation for CIFAR10/CIFAR100 in PyTorch." GitHub, 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES


class _ShortcutA(nn.Module):
    """Parameter-free shortcut ("option A"): subsample by 2 and zero-pad channels."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA((planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) with three stages of widths (w, 2w, 4w).

    Shape:
        input: (B, C, 32, 32) normalised; output: (B, num_classes) logits.
    """

    #: The batch norms that end a residual branch (a normalizer-free conversion puts its SkipInit gain there).
    residual_norms = ("layer*.*.bn2",)
    #: Where a DuBIN conversion puts DuBIN (the first norm of every block, as AugMax's ResNet does).
    dubin_sites = ("layer*.*.bn1",)

    def __init__(self, depth: int = 20, width: int = 16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet-CIFAR depth must be 6n+2 (8, 14, 20, 32, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width]
        layers = []
        in_planes = width
        for i, p in enumerate(planes):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, p, 2 if (i > 0 and j == 0) else 1))
                in_planes = p
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(planes[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        out = self.layer3(self.layer2(self.layer1(out)))  # (B, 4w, H/4, W/4)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 4w)
        result: torch.Tensor = self.linear(out)
        return result


ARCHITECTURES.register("resnet_cifar", ResNetCifar)
