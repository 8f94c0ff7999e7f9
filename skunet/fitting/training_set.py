"""``fit``'s training set: the one place where images in memory and images larger than
memory part ways.

:func:`~skunet.intake.validation.check_images` hands ``fit`` float32 ``(C, H, W)``
arrays and, for Dask / Zarr images, :class:`~skunet.intake.windows.LazyImage` objects;
:func:`~skunet.intake.validation.check_masks` hands it masks in memory or Dask masks.
:func:`training_set` normalises the one kind whole and scales the other by its exact
percentiles (one pass over it), and encodes masks in memory as class maps and Dask
masks as :class:`~skunet.intake.windows.LazyClasses`, which encode window by window.
Past it the two kinds are read alike (:func:`skunet.tiling.window`), and every window
of a stand-in equals the same window in memory.
"""

from __future__ import annotations

import functools

from ..intake.sampling import ImageSet
from ..intake.windows import LazyClasses, LazyImage
from ..lazy import is_lazy, lazy_percentiles
from ..preprocessing import PERCENTILES, normalize_images, scale_range
from ..targets import TARGETS, mask_classes

__all__ = ["training_set"]


def training_set(
    images: list,
    masks: list,
    *,
    normalize: str | None,
    n_classes: int,
    target: str,
    keep_labels: bool = False,
) -> ImageSet:
    """The :class:`~skunet.intake.sampling.ImageSet` ``fit`` trains on, from checked
    images and masks: the images normalised as ``normalize`` says, the masks as the
    ``target``'s class maps, and kept as instance labels if ``keep_labels`` (for the
    calibration). An image and its mask may each be in memory or lazy.
    """
    kept = [
        _normalized_lazy(im, normalize)
        if isinstance(im, LazyImage)
        else normalize_images([im], normalize)[0]
        for im in images
    ]
    # by name, so that DataLoader workers started by spawning can unpickle it
    encode = functools.partial(mask_classes, n_classes=n_classes, target=target)
    targets = [
        LazyClasses(m, encode, TARGETS[target].reach) if is_lazy(m) else encode(m) for m in masks
    ]
    return ImageSet(kept, targets, masks if keep_labels else None)


def _normalized_lazy(image: LazyImage, normalize: str | None) -> LazyImage:
    """``image`` scaled as :func:`~skunet.preprocessing.normalize_images` scales an
    image in memory (``"percentile"``: by its exact percentiles)."""
    if normalize != "percentile":
        return image
    lo, hi = lazy_percentiles(image.pixels(), PERCENTILES)
    return image.scaled(functools.partial(scale_range, lo=lo, hi=hi))
