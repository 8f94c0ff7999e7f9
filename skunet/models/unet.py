"""The U-Net of Ronneberger et al. (2015) and its common "same"-padding variant."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import ConvBlock, UpBlock, he_normal_init

__all__ = ["UNet"]


class UNet(nn.Module):
    """U-Net with a configurable depth, width, padding, activation and dropout.

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input image.
    out_channels : int, default=1
        Output logits: 1 for a binary problem (sigmoid), K for K classes (softmax).
    depth : int, default=4
        Number of 2x down-sampling steps.
    base_channels : int, default=64
        Feature maps of the first level; each level doubles them.
    padding : {"same", "valid"}, default="same"
        ``"same"`` keeps the spatial size (inputs must be divisible by ``2**depth``).
        ``"valid"`` is the 2015 paper's unpadded network: a 572x572 input gives a
        388x388 output, and skip connections are centre-cropped.
    activation : {"relu", "elu"}, default="relu"
    dropout : float or sequence of float, default=0.0
        Dropout between the two convolutions of each block; a sequence gives one value
        per level (``depth + 1`` values, the last for the bottleneck). Decoder blocks use
        the value of their level.
    batch_norm : bool, default=False
    up_mode : {"transpose", "bilinear"}, default="transpose"

    Examples
    --------
    >>> import torch
    >>> net = UNet(padding="valid")
    >>> net.output_shape((572, 572))
    (388, 388)
    >>> small = UNet(in_channels=1, out_channels=2, depth=2, base_channels=4)
    >>> small(torch.zeros(1, 1, 12, 20)).shape
    torch.Size([1, 2, 12, 20])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 64,
        padding: str = "same",
        activation: str = "relu",
        dropout: float | Sequence[float] = 0.0,
        batch_norm: bool = False,
        up_mode: str = "transpose",
    ) -> None:
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding={padding!r} is not supported; use 'same' or 'valid'")
        if int(depth) < 1:
            raise ValueError(f"depth must be at least 1, got {depth!r}")
        dropouts = _per_level(dropout, depth)
        self.depth = int(depth)
        self.padding = padding
        self.in_channels = in_channels
        self.out_channels = out_channels

        conv_pad = 1 if padding == "same" else 0
        widths = [base_channels * 2**level for level in range(depth + 1)]
        common = {"padding": conv_pad, "activation": activation, "batch_norm": batch_norm}

        self.down = nn.ModuleList()
        c_in = in_channels
        for level in range(depth):
            self.down.append(ConvBlock(c_in, widths[level], dropout=dropouts[level], **common))
            c_in = widths[level]
        self.pool = nn.MaxPool2d(2)
        self.bottom = ConvBlock(widths[-2], widths[-1], dropout=dropouts[depth], **common)
        self.up = nn.ModuleList(
            UpBlock(
                widths[level + 1],
                widths[level],
                widths[level],
                up_mode=up_mode,
                dropout=dropouts[level],
                **common,
            )
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        he_normal_init(self)

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return self.head(x)

    def _output_size(self, n: int) -> int | None:
        """Output length for input length ``n``, or None when ``n`` does not fit."""
        if self.padding == "same":
            return n if n > 0 and n % self.size_divisor == 0 else None
        for _ in range(self.depth):
            n -= 4
            if n <= 0 or n % 2:
                return None
            n //= 2
        n -= 4
        for _ in range(self.depth):
            if n <= 0:
                return None
            n = 2 * n - 4
        return n if n > 0 else None

    def valid_input_size(self, n: int) -> int:
        """Smallest input length >= ``n`` that the network accepts."""
        m = max(int(n), 1)
        while self._output_size(m) is None:
            m += 1
        return m

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for ``input_shape`` (``(H, W)`` or ``(..., H, W)``).

        Raises
        ------
        ValueError
            If a side does not fit the network; the message names the nearest sizes
            that do.
        """
        sizes = tuple(int(s) for s in input_shape[-2:])
        out = []
        for axis, n in zip(("height", "width"), sizes):
            o = self._output_size(n)
            if o is None:
                below = n - 1
                while below > 0 and self._output_size(below) is None:
                    below -= 1
                hint = (
                    f"{below} or {self.valid_input_size(n)}"
                    if below > 0
                    else str(self.valid_input_size(n))
                )
                raise ValueError(
                    f"input {axis} {n} does not fit a {self.padding}-padding U-Net of "
                    f"depth {self.depth}; use {hint}"
                )
            out.append(o)
        return tuple(out)


def _per_level(dropout: float | Sequence[float], depth: int) -> list[float]:
    if isinstance(dropout, (int, float)):
        values = [float(dropout)] * (depth + 1)
    else:
        values = [float(d) for d in dropout]
        if len(values) != depth + 1:
            raise ValueError(
                f"dropout needs one value per level ({depth + 1} for depth={depth}), "
                f"got {len(values)}: {list(dropout)}"
            )
    for d in values:
        if not 0.0 <= d < 1.0:
            raise ValueError(f"dropout values must be in [0, 1), got {d}")
    return values
