"""Masks to training targets: class maps and the boundary (3-class) encoding."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

__all__ = ["boundary_classes", "mask_classes"]


def boundary_classes(labels: np.ndarray) -> np.ndarray:
    """Instance labels to 0 background / 1 interior / 2 boundary.

    Boundary pixels are the objects' own outermost pixels
    (``skimage.segmentation.find_boundaries(mode="inner")``), so touching objects are
    separated by boundary class and the background stays background.

    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 1
    >>> boundary_classes(lab)
    array([[0, 0, 0, 0, 0],
           [0, 2, 2, 2, 0],
           [0, 2, 1, 2, 0],
           [0, 2, 2, 2, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    """
    classes = (labels > 0).astype(np.uint8)
    classes[find_boundaries(labels, mode="inner")] = 2
    return classes


def mask_classes(mask: np.ndarray, n_classes: int, target: str = "mask") -> np.ndarray:
    """A validated mask as the class map (uint8) the network is trained on.

    >>> mask_classes(np.array([[0, 7]]), n_classes=2)
    array([[0, 1]], dtype=uint8)
    """
    if target == "boundary":
        return boundary_classes(mask)
    if n_classes == 2:
        return (mask > 0).astype(np.uint8)
    return mask.astype(np.uint8 if n_classes <= 256 else np.int32)
