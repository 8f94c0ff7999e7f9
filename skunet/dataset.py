"""Datasets behind ``fit``: validated images, random training patches, whole images.

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

from .tiling import Geometry, label_window, window

__all__ = ["ImageSet", "PatchDataset", "WholeImageCollate", "flip_rotate"]


class ImageSet(Dataset):
    """Validated images (float32 ``(C, H, W)``) with their class maps (or None)."""

    def __init__(self, images: list[np.ndarray], targets: list[np.ndarray] | None = None):
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.images[i], None if self.targets is None else self.targets[i]


def _randint(high: int) -> int:
    return int(torch.randint(high, ()).item()) if high > 1 else 0


def flip_rotate(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal/vertical flip and 90-degree rotation of a square window."""
    k = _randint(8)
    if k & 4:
        image, labels = image[..., ::-1], labels[..., ::-1]
    rot = k & 3
    if rot:
        image = np.rot90(image, rot, axes=(-2, -1))
        labels = np.rot90(labels, rot, axes=(-2, -1))
    return image, labels


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
        ``True``: :func:`flip_rotate`; a callable ``f(image, labels) -> (image, labels)``
        replaces it; ``False`` disables augmentation.
    """

    def __init__(
        self,
        base: Dataset,
        geometry: Geometry,
        patch_size: int,
        patches_per_image: int = 1,
        augment: bool | Callable = True,
    ) -> None:
        self.base = base
        self.geometry = geometry
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment

    def __len__(self) -> int:
        return len(self.base) * self.patches_per_image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, classes = self.base[i % len(self.base)]
        p, ctx = self.patch_size, self.geometry.context
        h, w = classes.shape
        # the labelled patch lies inside the image, or the image inside the patch
        top = _randint(h - p + 1) if h >= p else -_randint(p - h + 1)
        left = _randint(w - p + 1) if w >= p else -_randint(p - w + 1)
        size = p + 2 * ctx
        x = window(image, top - ctx, left - ctx, size, size)
        y = label_window(classes, top - ctx, left - ctx, size, size, keep=(ctx, ctx, p, p))
        if self.augment is True:
            x, y = flip_rotate(x, y)
        elif callable(self.augment):
            x, y = self.augment(x, y)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


class WholeImageCollate:
    """Collate whole images of any sizes into one padded batch for validation."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry

    def __call__(self, batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.geometry
        height = g.input_length(max(im.shape[1] for im, _ in batch))
        width = g.input_length(max(im.shape[2] for im, _ in batch))
        c = g.context
        xs = np.stack([window(im, -c, -c, height, width) for im, _ in batch])
        ys = np.stack([label_window(t, -c, -c, height, width) for _, t in batch])
        return torch.from_numpy(xs), torch.from_numpy(ys)
