"""Probabilities to instance labels: connected components and seeded watershed."""

from __future__ import annotations

import numpy as np
from skimage.measure import label
from skimage.segmentation import watershed

__all__ = ["label_components", "watershed_instances"]


def label_components(foreground_prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label the connected components of ``foreground_prob > threshold`` (8-connected).

    >>> label_components(np.array([[0.9, 0.1, 0.8]])).tolist()
    [[1, 0, 2]]
    """
    return label(foreground_prob > threshold, connectivity=2).astype(np.int32)


def watershed_instances(
    foreground_prob: np.ndarray, boundary_prob: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Instances from a 3-class (background / interior / boundary) prediction.

    Seeds are the components of ``foreground - boundary > threshold`` (the confident
    interiors); they grow over the boundary probability as height map, within
    ``foreground > threshold``.

    >>> fg = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    >>> bd = np.array([[0.0, 0.1, 0.9, 0.1, 0.0]])
    >>> watershed_instances(fg, bd).tolist()
    [[1, 1, 2, 2, 2]]
    """
    markers = label(foreground_prob - boundary_prob > threshold, connectivity=1)
    return watershed(boundary_prob, markers, mask=foreground_prob > threshold).astype(np.int32)
