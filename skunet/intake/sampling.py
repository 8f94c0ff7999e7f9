"""Datasets behind ``fit``: validated images, random training patches, whole images.

:func:`skunet.fitting.training_set.training_set` makes the :class:`ImageSet` of
``fit``, images in memory and stand-ins of those larger than memory side by side
(:mod:`skunet.intake.windows`); past it the two are read alike
(:func:`skunet.tiling.window`).

Training draws random ``patch_size`` windows (plus the network's context, mirrored at
image borders) with random flips and 90-degree rotations. Validation sees whole images,
padded per batch, with the padding ignored by the loss and the metrics. Randomness comes
from torch's generator, so ``torch.manual_seed`` (the estimator's ``random_state``) and
DataLoader workers make it reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import flip_rotate, random_int
from ..tiling import IGNORE, Geometry, label_window, window
from .windows import LazyImage

__all__ = ["ImageSet", "PatchDataset", "WholeImageCollate", "class_target"]

_OUTSIDE = 1 << 30  # added to labels outside the image while a window is augmented
_UNANNOTATED = 1 << 29  # IGNORE pixels of a mask (not annotated), while augmented

WeightMap = Callable[[np.ndarray], np.ndarray]
"""``classes (H, W) with IGNORE -> weights (H, W)``, e.g. ``WeightMapLoss.weight_map``."""


def class_target(y):
    """The class map of a batch target, with or without its weight map."""
    return y[0] if isinstance(y, (list, tuple)) else y


class ImageSet(Dataset):
    """Validated images (float32 ``(C, H, W)``) with their class maps (or None), and the
    instance labels the class maps were made from (instance targets: ``"boundary"``,
    ``"distance"``), if any. Images larger than memory are
    :class:`~skunet.intake.windows.LazyImage` / :class:`~skunet.intake.windows.LazyClasses`
    stand-ins, of which :class:`PatchDataset` reads windows."""

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list[np.ndarray] | None = None,
        labels: list[np.ndarray] | None = None,
    ):
        self.images = images
        self.targets = targets
        self.labels = labels

    @property
    def lazy_indices(self) -> list[int]:
        """Indices of the images read window by window (larger than memory)."""
        return [i for i, image in enumerate(self.images) if isinstance(image, LazyImage)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.images[i], None if self.targets is None else self.targets[i]


class PatchDataset(Dataset):
    """Random training windows from a dataset of ``(image, classes)`` pairs.

    Parameters
    ----------
    base : Dataset
        Yields ``(image (C, H, W) float32, classes (H, W) int)``.
    geometry : Geometry
        Context around the labelled patch (the loss ignores it).
    patch_size : int
        Side of the labelled region; images smaller than it are mirrored around.
    patches_per_image : int, default=1
        Windows drawn from each image per epoch.
    augment : bool or callable, default=True
        ``True``: :func:`~skunet.augment.flip_rotate`; a callable
        ``f(image, labels) -> (image, labels)`` (e.g. :class:`~skunet.augment.Augment`)
        replaces it; ``False`` disables augmentation. It sees the whole window, context
        included, so deformations pull real labels into the patch.
    weight_map : callable or None, default=None
        Computes per-pixel loss weights from the augmented window's classes; items are
        then ``(image, (classes, weights))``.
    """

    def __init__(
        self,
        base: Dataset,
        geometry: Geometry,
        patch_size: int,
        patches_per_image: int = 1,
        augment: bool | Callable = True,
        weight_map: WeightMap | None = None,
    ) -> None:
        self.base = base
        self.geometry = geometry
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment
        self.weight_map = weight_map

    def __len__(self) -> int:
        return len(self.base) * self.patches_per_image

    def __getitem__(self, i: int):
        image, classes = self.base[i % len(self.base)]
        p, ctx = self.patch_size, self.geometry.context
        h, w = classes.shape
        # the labelled patch lies inside the image, or the image inside the patch
        top = random_int(h - p + 1) if h >= p else -random_int(p - h + 1)
        left = random_int(w - p + 1) if w >= p else -random_int(p - w + 1)
        size = p + 2 * ctx
        x = window(image, top - ctx, left - ctx, size, size)
        # labels mirrored like the image, those outside it tagged, so that deformations
        # move the tags along and weight maps see the mirrored cells
        y = window(classes, top - ctx, left - ctx, size, size).astype(np.int64)
        y[y < 0] = _UNANNOTATED  # pixels nobody annotated stay tagged through the moves
        rows = np.arange(top - ctx, top - ctx + size)
        cols = np.arange(left - ctx, left - ctx + size)
        y += _OUTSIDE * (((rows < 0) | (rows >= h))[:, None] | ((cols < 0) | (cols >= w))[None])
        if self.augment is True:
            x, y = flip_rotate(x, y)
        elif callable(self.augment):
            x, y = self.augment(x, y)
        y = np.array(y, dtype=np.int64)
        outside = y >= _OUTSIDE
        y[outside] -= _OUTSIDE
        y[y == _UNANNOTATED] = IGNORE
        weights = None if self.weight_map is None else self.weight_map(y)
        y[outside] = IGNORE  # mirrored pixels are input, not labels
        if ctx:  # the loss sees the patch only; the context is input
            border = np.ones(y.shape, dtype=bool)
            border[ctx : ctx + p, ctx : ctx + p] = False
            y[border] = IGNORE
        x, y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        if weights is None:
            return x, y
        return x, (y, torch.from_numpy(weights))


class WholeImageCollate:
    """Collate whole images of any sizes into one padded batch for validation."""

    def __init__(self, geometry: Geometry, weight_map: WeightMap | None = None) -> None:
        self.geometry = geometry
        self.weight_map = weight_map

    def __call__(self, batch: list):
        g = self.geometry
        height = g.input_length(max(im.shape[1] for im, _ in batch))
        width = g.input_length(max(im.shape[2] for im, _ in batch))
        c = g.context
        xs = np.stack([window(im, -c, -c, height, width) for im, _ in batch])
        ys = np.stack([label_window(t, -c, -c, height, width) for _, t in batch])
        if self.weight_map is None:
            return torch.from_numpy(xs), torch.from_numpy(ys)
        weights = np.stack([self.weight_map(t) for t in ys])
        return torch.from_numpy(xs), (torch.from_numpy(ys), torch.from_numpy(weights))
