"""Intensity normalisation of image lists, as an sklearn transformer for pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .intake.validation import check_images

__all__ = [
    "PERCENTILES",
    "ImageNormalizer",
    "normalize_images",
    "percentile_normalize",
    "scale_range",
]

PERCENTILES = (1.0, 99.8)
"""The percentiles a ``normalize="percentile"`` model maps to 0 and 1, in memory,
block by block and window by window."""


def scale_range(image: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A float32 copy of a ``(C, H, W)`` image with each channel's ``lo`` / ``hi`` mapped
    to 0 / 1 (the values taken as float32), as :func:`percentile_normalize` maps its
    percentiles; block-wise prediction passes the whole image's.

    >>> scale_range(np.array([[[2, 4]]], np.uint8), np.array([2.0]), np.array([4.0])).tolist()
    [[[0.0, 1.0]]]
    """
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    scaled = image.astype(np.float32)  # a copy, in float32 (large images stay affordable)
    scaled -= lo[:, None, None]
    scaled /= np.maximum(hi - lo, np.float32(1e-12))[:, None, None]
    return scaled


def percentile_normalize(
    image: np.ndarray,
    lower: float = PERCENTILES[0],
    upper: float = PERCENTILES[1],
    clip: bool = False,
) -> np.ndarray:
    """Map each channel's ``lower`` / ``upper`` percentiles of a ``(C, H, W)`` image to 0 / 1.

    The per-image normalisation of CSBDeep and StarDist: it removes the large
    brightness differences between microscopes and stainings. Returns float32.

    >>> im = np.arange(101, dtype=np.uint8).reshape(1, 1, 101)
    >>> out = percentile_normalize(im, 0, 100)
    >>> float(out.min()), float(out.max())
    (0.0, 1.0)
    """
    lo, hi = np.percentile(image, [lower, upper], axis=(1, 2))
    scaled = scale_range(image, lo, hi)
    if clip:
        np.clip(scaled, 0, 1, out=scaled)
    return scaled


def normalize_images(images: list[np.ndarray], method: str | None) -> list[np.ndarray]:
    r"""``(C, H, W)`` images as a segmenter's ``normalize`` setting preprocesses them, in
    ``fit`` and in every prediction: as they are (None) or :func:`percentile_normalize`\ d.

    >>> normalize_images([np.arange(4.0).reshape(1, 2, 2)], None)[0].shape
    (1, 2, 2)
    """
    if method == "percentile":
        return [percentile_normalize(im) for im in images]
    return images


class ImageNormalizer(TransformerMixin, BaseEstimator):
    """Scale each channel of a list of images to a common range.

    Parameters
    ----------
    method : {"percentile", "zscore"}, default="percentile"
        ``"percentile"``: per image and channel, map the ``lower`` and ``upper``
        percentiles to 0 and 1 (as CSBDeep / StarDist do); nothing is learned.
        ``"zscore"``: subtract the per-channel mean and divide by the standard deviation
        of all training pixels, learned in ``fit``.
    lower, upper : float, default=1.0, 99.8
        Percentiles for ``"percentile"``.
    clip : bool, default=False
        Clip the result to [0, 1] (``"percentile"`` only).

    Attributes
    ----------
    mean_, std_ : ndarray of shape (n_channels,)
        Learned by ``"zscore"``.
    n_channels_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = [np.arange(100, dtype=np.uint8).reshape(10, 10)]
    >>> out = ImageNormalizer(lower=0, upper=100).fit_transform(X)
    >>> float(out[0].min()), float(out[0].max()), out[0].shape
    (0.0, 1.0, (10, 10))
    """

    def __init__(
        self,
        method: str = "percentile",
        lower: float = 1.0,
        upper: float = 99.8,
        clip: bool = False,
    ) -> None:
        self.method = method
        self.lower = lower
        self.upper = upper
        self.clip = clip

    def _check_params(self) -> None:
        if self.method not in ("percentile", "zscore"):
            raise ValueError(f"method={self.method!r}; use 'percentile' or 'zscore'")
        if not 0 <= self.lower < self.upper <= 100:
            raise ValueError(
                f"need 0 <= lower < upper <= 100, got lower={self.lower}, upper={self.upper}"
            )

    def fit(self, X: Any, y: Any = None) -> ImageNormalizer:
        self._check_params()
        images = check_images(X)
        self.n_channels_in_ = images[0].shape[0]
        if self.method == "zscore":
            flat = np.concatenate([im.reshape(im.shape[0], -1) for im in images], axis=1)
            self.mean_ = flat.mean(axis=1, dtype=np.float64)
            self.std_ = flat.std(axis=1, dtype=np.float64)
        return self

    def transform(self, X: Any) -> list[np.ndarray]:
        """Normalised float32 images, channels-last like the input."""
        check_is_fitted(self, "n_channels_in_")
        images = check_images(X, n_channels=self.n_channels_in_)
        out = []
        for im in images:
            if self.method == "zscore":
                std = np.where(self.std_ > 0, self.std_, 1.0)
                scaled = (im - self.mean_[:, None, None]) / std[:, None, None]
            else:
                scaled = percentile_normalize(im, self.lower, self.upper, self.clip)
            scaled = scaled.astype(np.float32)
            out.append(scaled[0] if scaled.shape[0] == 1 else np.moveaxis(scaled, 0, -1))
        return out
