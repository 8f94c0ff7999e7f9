"""Probabilities to instance labels (connected components, seeded watersheds from
boundary classes or distance levels), and the one-object clean-up of class maps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import disk, h_maxima, opening
from skimage.segmentation import watershed

from skunet.agglomeration import agglomerate

__all__ = [
    "LargestObject",
    "Regions",
    "cell_instances",
    "distance_instances",
    "distance_mask",
    "label_components",
    "largest_object",
    "membrane_basins",
    "membrane_instances",
    "watershed_instances",
]


@dataclass(frozen=True)
class Regions:
    """The independent regions of a decoder, which let :mod:`skunet.prediction.block_instances`
    decode an image larger than memory block by block, exactly.

    Parameters
    ----------
    mask : callable
        ``mask(p, threshold) -> bool (H, W)``: the pixels the decoder labels, from an
        image's compact probabilities.
    connectivity : {1, 2}
        The decoder's objects in one connected component of the mask (at this
        connectivity) depend on the probabilities in it and within ``halo`` pixels
        around it only, not on other components.
    halo : int
        Pixels of context the mask and the decoder need around a pixel.
    whole : bool
        Each region is one object (the decoder labels connected components).
    split_local : bool
        Whether a split keeps the decoding region by region (False: block-wise
        decoding needs ``split=None``).
    """

    mask: Callable[[np.ndarray, float], np.ndarray]
    connectivity: int
    halo: int = 0
    whole: bool = False
    split_local: bool = True


def label_components(foreground_prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label the connected components of ``foreground_prob > threshold`` (8-connected).

    >>> label_components(np.array([[0.9, 0.1, 0.8]])).tolist()
    [[1, 0, 2]]
    """
    return label(foreground_prob > threshold, connectivity=2).astype(np.int32)


def watershed_instances(
    foreground_prob: np.ndarray,
    boundary_prob: np.ndarray,
    threshold: float = 0.5,
    split: float | None = 0.5,
) -> np.ndarray:
    """Instances from a 3-class (background / interior / boundary) prediction.

    Seeds are the confident interiors, ``foreground - boundary > threshold``; they grow
    over the boundary probability as height map, within ``foreground > threshold``.

    Where the predicted boundary between touching objects has gaps, two objects share
    one seed. ``split`` (a height in pixels) separates them at the maxima of the seeds'
    distance transform (smoothed with a 1-pixel Gaussian) that stand at least ``split``
    above their surroundings, and then floods the boundary probability minus the
    normalised distance, so that objects meet at boundaries and at necks. ``split=None``
    keeps one seed per connected interior.

    >>> fg = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    >>> bd = np.array([[0.0, 0.1, 0.9, 0.1, 0.0]])
    >>> watershed_instances(fg, bd, split=None).tolist()
    [[1, 1, 2, 2, 2]]
    """
    seeds = foreground_prob - boundary_prob > threshold
    height = boundary_prob
    if split is None:
        markers = label(seeds, connectivity=1)
    else:
        distance = ndi.gaussian_filter(ndi.distance_transform_edt(seeds), 1.0)
        markers = label(h_maxima(distance, split) & seeds)
        height = boundary_prob - distance / max(float(distance.max()), 1e-6)
    return watershed(height, markers, mask=foreground_prob > threshold).astype(np.int32)


def distance_instances(
    probabilities: np.ndarray,
    threshold: float = 0.5,
    split: float | None = 0.5,
    sigma: float = 1.0,
) -> np.ndarray:
    """Instances from a distance-level prediction (``target="distance"``).

    ``probabilities`` ``(K, H, W)``: background and ``K - 1`` levels of each object's
    normalised distance to its border (:func:`~skunet.targets.distance_classes`). The
    expected distance (levels at their centres, 0 for the background) is the height map:
    seeds are its connected regions above ``split`` (a fraction of an object's largest
    distance), one per object, and they flood down to where objects meet, within
    ``1 - background > threshold``. ``split=None`` keeps one object per connected
    foreground. The probabilities are first smoothed by a Gaussian of ``sigma`` pixels
    (0: not at all): one pixel that the network gave a high level is no seed of its own
    (on the nuclei benchmark's held-out images, AP@0.5 0.748 -> 0.813 with 1 px,
    ``benchmarks/results/nuclei_trials.json``).

    >>> p = np.zeros((3, 1, 6))
    >>> p[0, 0, [0, 5]] = 1                              # background at both ends
    >>> p[2, 0, [1, 4]] = 1                              # two object centres ...
    >>> p[1, 0, [2, 3]] = 1                              # ... meeting at a low level
    >>> distance_instances(p, sigma=0).tolist(), distance_instances(p, split=None, sigma=0).tolist()
    ([[0, 1, 1, 2, 2, 0]], [[0, 1, 1, 1, 1, 0]])
    """
    probabilities = np.asarray(probabilities)
    levels = len(probabilities) - 1
    centres = ((np.arange(1, levels + 1) - 0.5) / levels).astype(probabilities.dtype)
    # the smoothing is linear: smooth the background and the expected distance (two
    # planes), not each of the K levels
    distance = np.tensordot(centres, probabilities[1:], axes=1)
    background, distance = _smooth(np.stack([probabilities[0], distance]), sigma)
    foreground = 1 - background
    mask = foreground > threshold
    seeds = mask if split is None else mask & (distance > split)
    markers = label(seeds, connectivity=1)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def _smooth(probabilities: np.ndarray, sigma: float) -> np.ndarray:
    """Each channel smoothed by a Gaussian of ``sigma`` pixels (reaching
    ``round(4 * sigma)`` pixels), as :func:`distance_instances` does."""
    return ndi.gaussian_filter(probabilities, (0, sigma, sigma)) if sigma else probabilities


def distance_mask(probabilities: np.ndarray, threshold: float = 0.5, sigma: float = 1.0):
    """The pixels :func:`distance_instances` labels: smoothed foreground above ``threshold``."""
    return 1 - _smooth(probabilities[:1], sigma)[0] > threshold


def membrane_instances(
    cell_prob: np.ndarray,
    threshold: float = 0.5,
    split: float | None = 0.85,
    sigma: float = 1.0,
    *,
    contrast: bool = True,
) -> np.ndarray:
    """Cells from a membrane prediction (EM: cell probability, membrane = 1 - it).

    ``split=None``: the connected components of ``cell_prob > threshold``
    (:func:`label_components`), which merge two cells wherever the predicted membrane
    between them has a gap, and cut a cell whose inside the network found dark.
    Otherwise the cells are agglomerated basins, as connectomics pipelines build them:

    1. seeds: the 4-connected components of ``cell_prob > threshold``, every one of
       them (no cell is lost);
    2. basins: a watershed of the membrane probability (smoothed by a Gaussian of
       ``sigma`` pixels) from the seeds over the whole image, so that neighbouring
       cells meet on the ridges of the membranes;
    3. neighbouring basins merge, the weakest border first, while their border's
       strength is below ``split`` (:func:`skunet.agglomeration.agglomerate`). A
       border is the pairs of neighbouring pixels (4-connected) of the two basins, and
       each pair counts the larger membrane probability of its two pixels: an intact
       membrane one pixel thin counts fully, and noise inside a cell counts at its own
       level. Its strength is its mean ``b`` measured against the darker inside of its
       two cells (``contrast``): ``(b - m) / (1 - m)``, ``m`` the smaller of the two
       cells' median membrane probabilities (0 when ``b <= m``; medians to 0.01,
       updated as cells merge), so that the pieces of a cell whose whole inside the
       network found dark merge across a border no darker than that inside, while
       between bright cells (``m`` near 0) the strength is the mean.
       ``contrast=False``: the mean ``b`` alone.

    A gap of a few pixels in a long membrane barely lowers its border's mean, so the
    cells stay apart once their seeds are (a ``threshold`` above the gap's
    probability); in a short border it counts more (one pixel of nine at 0.2 brings
    a border of 0.9 to 0.82, below the default split). A dark band inside a cell is a
    weak border, and its pieces merge. A border whose strength is ``split`` or more
    is never crossed. Every pixel belongs to a cell: a pixel where two labels meet is
    membrane, as the ISBI challenge reads a segmentation.

    >>> cells = np.full((9, 15), 0.95)
    >>> cells[:, 7] = 0.05                # a membrane ...
    >>> cells[4, 7] = 0.8                 # ... with a one-pixel gap
    >>> int(label_components(cells).max()), int(membrane_instances(cells, 0.9).max())
    (1, 2)
    """
    if split is None:
        return label_components(cell_prob, threshold)
    basins, membrane = membrane_basins(cell_prob, threshold, sigma)
    if basins.max() < 2:
        return basins.astype(np.int32)
    return agglomerate(basins, membrane, split, contrast)


def membrane_basins(
    cell_prob: np.ndarray, threshold: float = 0.5, sigma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The basins :func:`membrane_instances` agglomerates, and the membrane probability.

    Seeds are the 4-connected components of ``cell_prob > threshold``; the basins are a
    watershed from them of the membrane probability ``1 - cell_prob`` smoothed by a
    Gaussian of ``sigma`` pixels, over the whole image (all zeros without a seed).
    Returns ``(basins, membrane)``: labels ``1..n`` and the unsmoothed membrane
    probability (float64), the input of :func:`skunet.agglomeration.agglomerate`.
    """
    seeds = label(cell_prob > threshold, connectivity=1)
    membrane = 1 - np.asarray(cell_prob, dtype=np.float64)
    height = ndi.gaussian_filter(membrane, sigma) if sigma else membrane
    return (watershed(height, seeds) if seeds.max() else seeds), membrane


def largest_object(classes: np.ndarray, opening_radius: int = 0) -> np.ndarray:
    """Keep the largest connected object of a class map and fill its holes.

    For images that show one object, e.g. one white blood cell: the foreground (every
    class but 0) is reduced to its largest 8-connected component, whose holes take the
    class of the nearest object pixel; so the inner classes (a nucleus) stay inside the
    object. Pass it as ``postprocess=`` to a segmenter (or :class:`LargestObject` to
    set ``opening_radius`` there).

    Parameters
    ----------
    classes : ndarray of int, shape (H, W)
    opening_radius : int, default=0
        Radius in pixels of a morphological opening of the foreground before the largest
        component is taken: it cuts bridges and spurs narrower than ``2 * opening_radius + 1``
        pixels (a neighbour touching the cell, a strand of debris) and rounds corners
        sharper than that disk. 0: no opening.

    >>> largest_object(np.array([[1, 1, 1, 0, 2],
    ...                          [1, 0, 2, 0, 0],
    ...                          [1, 2, 2, 0, 0]])).tolist()
    [[1, 1, 1, 0, 0], [1, 1, 2, 0, 0], [1, 2, 2, 0, 0]]
    """
    foreground = classes > 0
    if opening_radius:
        opened = opening(foreground, disk(opening_radius))
        foreground = opened if opened.any() else foreground  # nothing wider than the disk
    objects = label(foreground, connectivity=2)
    if objects.max() == 0:
        return classes
    largest = objects == np.argmax(np.bincount(objects.ravel())[1:]) + 1
    filled = ndi.binary_fill_holes(largest)
    # every pixel of the object (holes included) takes the class of its nearest object pixel
    _, (rows, cols) = ndi.distance_transform_edt(~largest, return_indices=True)
    return np.where(filled, classes[rows, cols], 0).astype(classes.dtype)


@dataclass(frozen=True)
class LargestObject:
    """:func:`largest_object` with its settings, for ``postprocess=``; stored in model
    files with them.

    >>> cell = np.zeros((7, 14), np.uint8)
    >>> cell[:, :7], cell[3, 7:10], cell[1:6, 10:13] = 1, 1, 1  # a neighbour on a bridge
    >>> bool(largest_object(cell)[:, 10:].any()), bool(LargestObject(1)(cell)[:, 10:].any())
    (True, False)
    """

    opening_radius: int = 0

    def __call__(self, classes: np.ndarray) -> np.ndarray:
        return largest_object(classes, self.opening_radius)


def cell_instances(labels_or_mask: np.ndarray) -> np.ndarray:
    """Instance labels: a binary mask (bool, or two values 0 and one other) split into its
    4-connected components, anything else returned as it is (already instance labels).

    4-connectivity keeps cells apart that a one-pixel diagonal membrane separates.

    >>> cell_instances(np.array([[1, 0, 1], [0, 1, 0]])).tolist()
    [[1, 0, 2], [0, 3, 0]]
    """
    a = np.asarray(labels_or_mask)
    values = np.unique(a[a > 0]) if a.dtype != bool else np.array([1])
    if a.dtype == bool or len(values) <= 1:
        return label(a > 0, connectivity=1)
    return a
