"""The localiser's small segmentation network: a four-level U-Net for vertebral bodies.

Introduced in chapter 08, *Real scans*. One grey sagittal slice in, one map of
vertebral-body logits out, at the localiser's working resolution
(:data:`spinenet_lite.localise.inference.WORK_SPACING_MM` mm pixels). It is fully convolutional:
any height and width divisible by :data:`MULTIPLE` works. With ``width=12`` it has about
0.25 M parameters, small enough to train in minutes on one CPU thread.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MULTIPLE: int = 8
"""Input height and width must be multiples of this (three 2x poolings)."""


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class LocaliserNet(nn.Module):
    """U-Net with four resolution levels (widths ``w, 2w, 4w, 8w``) and one output map.

    Parameters
    ----------
    width : int
        Channels of the first level (default 12).

    Notes
    -----
    ``forward(x)`` takes ``(N, 1, H, W)`` float (per-slice normalised intensities, see
    :func:`spinenet_lite.localise.inference.normalise_slice`) with ``H, W`` multiples of
    :data:`MULTIPLE` and returns ``(N, 1, H, W)`` float logits of "vertebral body".
    """

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        if int(width) < 1:
            raise ValueError(f"width must be a positive integer; got {width}")
        w = int(width)
        self.width = w
        self.enc = nn.ModuleList([_block(1, w), _block(w, 2 * w), _block(2 * w, 4 * w)])
        self.bottom = _block(4 * w, 8 * w)
        self.up = nn.ModuleList([nn.Conv2d(8 * w, 4 * w, 1), nn.Conv2d(4 * w, 2 * w, 1),
                                 nn.Conv2d(2 * w, w, 1)])
        self.dec = nn.ModuleList([_block(8 * w, 4 * w), _block(4 * w, 2 * w), _block(2 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] % MULTIPLE or x.shape[3] % MULTIPLE:
            raise ValueError(f"LocaliserNet needs (N, 1, H, W) with H, W multiples of {MULTIPLE}; "
                             f"got {tuple(x.shape)}")
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
