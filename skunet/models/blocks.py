"""Building blocks shared by the U-Net family: conv blocks, up-sampling, crops."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBlock", "UpBlock", "center_crop", "he_normal_init"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU}


def get_activation(name: str) -> type[nn.Module]:
    """Return the activation class registered under ``name``."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation={name!r} is not supported; use one of {sorted(_ACTIVATIONS)}"
        ) from None


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the last two axes of ``x`` to ``(height, width)`` around the centre."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by optional batch norm and the activation.

    Dropout (as in the blood-cell lab's network) sits between the two convolutions.
    ``padding=0`` gives the 2015 paper's unpadded ("valid") block, which shrinks each
    side by 2 pixels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        padding: int = 1,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        act = get_activation(activation)
        layers: list[nn.Module] = []
        for i, c_in in enumerate((in_channels, out_channels)):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(act(inplace=True))
            if i == 0 and dropout > 0:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Up-sample by 2, concatenate the (centre-cropped) skip, then a :class:`ConvBlock`."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        up_mode: str = "transpose",
        **block_kwargs,
    ) -> None:
        super().__init__()
        if up_mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        elif up_mode == "bilinear":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )
        else:
            raise ValueError(f"up_mode={up_mode!r} is not supported; use 'transpose' or 'bilinear'")
        self.block = ConvBlock(out_channels + skip_channels, out_channels, **block_kwargs)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.block(torch.cat([skip, x], dim=1))


def he_normal_init(module: nn.Module) -> None:
    """He-normal weights and zero biases for every (transposed) convolution."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
