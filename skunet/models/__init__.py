"""The U-Net family: :class:`UNet` (same / valid padding) and :class:`VGG16UNet`."""

from __future__ import annotations

from torch import nn

from ..intake.validation import lookup
from .unet import UNet
from .vgg import VGG16UNet

__all__ = ["MODELS", "UNet", "VGG16UNet", "get_model"]

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "vgg16_unet": VGG16UNet}


def get_model(name: str) -> type[nn.Module]:
    """Return the model class registered under ``name``.

    >>> get_model("unet").__name__
    'UNet'
    """
    return lookup(MODELS, name, "model")
