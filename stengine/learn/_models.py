"""Built-in models (small, CPU-trainable): a U-Net-like segmenter, a patch classifier and a
triplet embedding CNN. Each factory takes keyword parameters only, so a
:class:`~stengine.learn.registry.ModelSpec` (name + params) rebuilds the same module.

Inputs are normalised patches ``(B, C, S, S)`` float32 (see ``registry.normalise``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["patch_unet", "patch_classifier", "triplet_cnn", "BUILTINS"]


def _check(name, value, *, op):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer; got {value!r}")
    return value


def _block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PatchUNet(nn.Module):
    """U-Net-like: ``depth`` down/up levels of 2 convs, skip connections; per-pixel logits
    ``(B, n_classes, S, S)``. Any ``S``: up-sampled maps are resized to their skip."""

    def __init__(self, in_channels: int, n_classes: int, base: int = 16, depth: int = 2):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        widths = [base * 2**i for i in range(depth + 1)]
        for w in widths[:-1]:
            self.down.append(_block(c, w))
            c = w
        self.bottom = _block(c, widths[-1])
        self.up = nn.ModuleList()
        self.reduce = nn.ModuleList()  # 1x1 convs: coarser level's width → this level's
        prev = widths[-1]
        for w in reversed(widths[:-1]):
            self.reduce.append(nn.Conv2d(prev, w, 1))
            self.up.append(_block(2 * w, w))
            prev = w
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x):
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2, ceil_mode=True)
        x = self.bottom(x)
        for red, blk, skip in zip(self.reduce, self.up, reversed(skips), strict=True):
            x = F.interpolate(red(x), size=skip.shape[-2:], mode="nearest")
            x = blk(torch.cat([x, skip], 1))
        return self.head(x)


class _Encoder(nn.Module):
    def __init__(self, in_channels, width, blocks):
        super().__init__()
        layers, c = [], in_channels
        for i in range(blocks):
            w = width * 2**i
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.body = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1)


class PatchClassifier(nn.Module):
    """Conv encoder + global average pool + linear: per-patch logits ``(B, n_classes)``."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, blocks: int = 3):
        super().__init__()
        self.encoder = _Encoder(in_channels, width, blocks)
        self.head = nn.Linear(self.encoder.out_channels, n_classes)

    def forward(self, x):
        return self.head(self.encoder(x))


class TripletCNN(nn.Module):
    """Conv encoder + linear: a per-patch embedding ``(B, dim)``, L2-normalised."""

    def __init__(self, in_channels: int, dim: int = 64, width: int = 32, blocks: int = 3):
        super().__init__()
        self.encoder = _Encoder(in_channels, width, blocks)
        self.head = nn.Linear(self.encoder.out_channels, dim)

    def forward(self, x):
        return F.normalize(self.head(self.encoder(x)), dim=1)


def patch_unet(*, in_channels: int, n_classes: int, base: int = 16, depth: int = 2):
    """Per-pixel classes: ``(B, C, S, S) → (B, n_classes, S, S)`` logits."""
    op = "patch_unet"
    return PatchUNet(_check("in_channels", in_channels, op=op),
                     _check("n_classes", n_classes, op=op), _check("base", base, op=op),
                     _check("depth", depth, op=op))


def patch_classifier(*, in_channels: int, n_classes: int, width: int = 32, blocks: int = 3):
    """Per-patch label: ``(B, C, S, S) → (B, n_classes)`` logits."""
    op = "patch_classifier"
    return PatchClassifier(_check("in_channels", in_channels, op=op),
                           _check("n_classes", n_classes, op=op), _check("width", width, op=op),
                           _check("blocks", blocks, op=op))


def triplet_cnn(*, in_channels: int, dim: int = 64, width: int = 32, blocks: int = 3):
    """Per-patch embedding: ``(B, C, S, S) → (B, dim)``, unit L2 norm."""
    op = "triplet_cnn"
    return TripletCNN(_check("in_channels", in_channels, op=op), _check("dim", dim, op=op),
                      _check("width", width, op=op), _check("blocks", blocks, op=op))


# name → (factory, output kind, the param giving n_outputs)
BUILTINS = {
    "patch_unet": (patch_unet, "classes", "n_classes"),
    "patch_classifier": (patch_classifier, "label", "n_classes"),
    "triplet_cnn": (triplet_cnn, "vector", "dim"),
}
