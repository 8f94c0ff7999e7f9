"""A U-Net whose encoder is torchvision's VGG16-BN (the skorch nuclei tutorial's model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from torchvision.models import VGG16_BN_Weights

__all__ = ["VGG16UNet", "vgg16_bn_encoder"]


def _decoder_block(in_channels: int, middle_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, middle_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(middle_channels, out_channels, kernel_size=4, stride=2, padding=1),
        nn.ReLU(inplace=True),
    )


def _adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn RGB filters into ``in_channels`` filters that respond alike to gray input."""
    if in_channels == 3:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (3 / in_channels)


def _cycle(values: list[float], n: int) -> torch.Tensor:
    if n == 1:
        return torch.tensor([sum(values) / len(values)])
    return torch.tensor([values[i % len(values)] for i in range(n)])


def _verify(weights: VGG16_BN_Weights | str) -> VGG16_BN_Weights:
    from torchvision.models import VGG16_BN_Weights

    try:
        return VGG16_BN_Weights.verify(weights)
    except (KeyError, ValueError, TypeError):
        names = [w.name for w in VGG16_BN_Weights]
        raise ValueError(f"weights={weights!r} is not known; use None or one of {names}") from None


def vgg16_bn_encoder(
    in_channels: int = 3, weights: VGG16_BN_Weights | str | None = None, progress: bool = True
) -> nn.Sequential:
    """VGG16-BN ``features`` with ``in_channels`` inputs, optionally with pretrained weights.

    Weights come through torchvision's weights API, so they are read from
    ``$TORCH_HOME/hub/checkpoints`` when cached there and downloaded otherwise. Only the
    ``features.*`` tensors are used; the first convolution is adapted when
    ``in_channels != 3`` (summed for one channel, cycled and rescaled otherwise).
    """
    # torchvision is imported when a VGG network is built, not with skunet (seconds)
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"], batch_norm=True)
    if in_channels != 3:
        features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    if weights is not None:
        weights = _verify(weights)
        state = weights.get_state_dict(progress=progress, check_hash=True)
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        state["0.weight"] = _adapt_first_conv(state["0.weight"], in_channels)
        features.load_state_dict(state)
    return features


class VGG16UNet(nn.Module):
    """U-Net with a VGG16-BN encoder and the skorch tutorial's decoder.

    Encoder stages are the attributes ``conv1`` ... ``conv5``, so that skorch's
    ``Freezer("conv*")`` freezes exactly the encoder. With ``weights`` the input is
    normalised with the weights' mean and std inside the module (inputs in [0, 1]).

    Parameters
    ----------
    in_channels : int, default=3
        Any number of channels; the first convolution is adapted when it is not 3.
    out_channels : int, default=1
    weights : None or "IMAGENET1K_V1" or torchvision.models.VGG16_BN_Weights, default=None
    progress : bool, default=True
        Show a progress bar when the weights have to be downloaded.

    Examples
    --------
    >>> import torch
    >>> net = VGG16UNet(in_channels=1, out_channels=1)
    >>> net(torch.zeros(1, 1, 64, 96)).shape
    torch.Size([1, 1, 64, 96])
    """

    size_divisor = 32
    freezes_encoder = True  # Freezer("conv*") is meant for this encoder

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        weights: VGG16_BN_Weights | str | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        encoder = vgg16_bn_encoder(in_channels, weights, progress)
        self.conv1 = encoder[:6]
        self.conv2 = encoder[6:13]
        self.conv3 = encoder[13:23]
        self.conv4 = encoder[23:33]
        self.conv5 = encoder[33:43]
        self.center = nn.Sequential(encoder[43], _decoder_block(512, 512, 256))
        self.dec5 = _decoder_block(256 + 512, 512, 256)
        self.dec4 = _decoder_block(256 + 512, 512, 256)
        self.dec3 = _decoder_block(256 + 256, 256, 64)
        self.dec2 = _decoder_block(64 + 128, 128, 32)
        self.dec1 = nn.Sequential(nn.Conv2d(32 + 64, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.final = nn.Conv2d(32, out_channels, kernel_size=1)

        mean, std = [0.0], [1.0]
        if weights is not None:
            preprocess = _verify(weights).transforms()
            mean, std = list(preprocess.mean), list(preprocess.std)
        self.register_buffer("input_mean", _cycle(mean, in_channels).view(1, -1, 1, 1))
        self.register_buffer("input_std", _cycle(std, in_channels).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_std
        conv1 = self.conv1(x)
        conv2 = self.conv2(conv1)
        conv3 = self.conv3(conv2)
        conv4 = self.conv4(conv3)
        conv5 = self.conv5(conv4)
        center = self.center(conv5)
        dec5 = self.dec5(torch.cat([center, conv5], 1))
        dec4 = self.dec4(torch.cat([dec5, conv4], 1))
        dec3 = self.dec3(torch.cat([dec4, conv3], 1))
        dec2 = self.dec2(torch.cat([dec3, conv2], 1))
        dec1 = self.dec1(torch.cat([dec2, conv1], 1))
        return self.final(dec1)
