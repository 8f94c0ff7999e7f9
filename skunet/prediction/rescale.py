"""Prediction at another magnification: ``predict*(X, scale=...)``.

A network learns objects of the sizes it was trained on: the H&E nuclei model 40x tiles
(nuclei about 10-40 px across), the fluorescence one nuclei of about 5-80 px. An image
taken at 20x is predicted with ``scale=2``: it is resized by that factor before the
network sees it (``skimage.transform.resize``, bilinear, anti-aliased when shrinking),
and the compact probabilities are resized back to the image's own size (bilinear,
anti-aliased when shrinking), where classes, instances and uncertainty are decoded as
usual. ``scale`` is the factor StarDist's ``predict_instances(scale=...)`` takes, or
Cellpose's model diameter over the objects' diameter: the training magnification over
the image's.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.transform import resize

from ..constraints import Interval, check_params
from ..intake.validation import as_float32

__all__ = ["check_scale", "rescale_image", "resize_probabilities"]


def check_scale(scale: float) -> float:
    """``scale`` as a float, or a ValueError / TypeError that names it
    (:func:`~skunet.constraints.check_params`, and finite).

    >>> check_scale(2)
    2.0
    """
    check_params({"scale": scale}, {"scale": [Interval(float, 0, None, "neither")]})
    if not math.isfinite(scale):  # an open Interval takes inf and NaN
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """A ``(C, H, W)`` image resized by ``scale`` (each side rounded), as float32 in the
    units the network reads (integers divided by their dtype's maximum).

    >>> rescale_image(np.full((1, 10, 6), 255, np.uint8), 2).shape
    (1, 20, 12)
    """
    if scale == 1:
        return image
    image = as_float32(image)
    shape = _sides(image.shape[1:], scale)
    out = resize(image, (len(image), *shape), order=1, mode="reflect",
                 anti_aliasing=scale < 1, preserve_range=True)  # fmt: skip
    return out.astype(np.float32, copy=False)


def resize_probabilities(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Compact probabilities ``(K', h, w)`` resized to ``shape`` (H, W): bilinear,
    anti-aliased when shrinking; every channel with the same weights, so probabilities
    that summed to 1 still do.

    >>> p = np.zeros((2, 4, 4), np.float32); p[0] = 1
    >>> resize_probabilities(p, (2, 2)).sum(0).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    if p.shape[1:] == tuple(shape):
        return p
    shrink = p.shape[1] > shape[0] or p.shape[2] > shape[1]
    out = resize(p, (len(p), *shape), order=1, mode="edge",
                 anti_aliasing=shrink, preserve_range=True)  # fmt: skip
    return out.astype(np.float32, copy=False)


def _sides(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return tuple(max(1, round(side * scale)) for side in shape)  # type: ignore[return-value]
