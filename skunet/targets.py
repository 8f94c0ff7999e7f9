"""Training targets: how masks become class maps and predictions become objects.

:data:`TARGETS` is the one registry of targets (``"mask"``, ``"boundary"``,
``"distance"``): each :class:`Target` record declares how validated masks become the
classes the network learns, how many classes that takes, whether the masks must hold
instance labels, and how compact probabilities become instance labels (decoder, default
split, calibration grid). :data:`MEMBRANES` is the decoding of binary models whose
background is membrane between touching cells (a task's ``membranes``). Validation, the
:class:`~skunet.predictor.Predictor`, the calibration and the presets read them; a new
target is one record. Also here: the encodings themselves and the U-Net weight map.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.segmentation import find_boundaries

from .instances import (
    Regions,
    distance_instances,
    distance_mask,
    label_components,
    membrane_instances,
    watershed_instances,
)
from .lazy import is_lazy
from .lazy_windows import LazyClasses

__all__ = [
    "MEMBRANES",
    "TARGETS",
    "THRESHOLDS",
    "Target",
    "boundary_classes",
    "decoding",
    "distance_classes",
    "mask_classes",
    "unet_weight_map",
]


# The thresholds a calibration tries by default. The nuclei benchmark's first calibrated
# model chose 0.3 and 2 px, both at the edge of the grid it had (0.3-0.7 x None-2 px), so
# the grid reaches further now.
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _foreground(p: np.ndarray) -> np.ndarray:
    """The foreground probability of compact probabilities (one logit, or class 1 of K)."""
    return p[0] if p.shape[0] == 1 else p[1]


def _above(p: np.ndarray, threshold: float) -> np.ndarray:
    return _foreground(p) > threshold


@dataclass(frozen=True)
class Target:
    """A training target.

    Parameters
    ----------
    name : str
    encode : callable
        ``encode(mask, n_classes) -> uint8 classes`` of a validated mask.
    decode : callable
        ``decode(p, threshold, split) -> labels`` of an image's compact probabilities
        ``(K', H, W)``.
    decoder : str
        The :mod:`skunet.instances` function ``decode`` runs (named in exported models).
    instance_labels : bool
        The model's objects are judged against labels, which ``fit`` keeps for the
        calibration: for the records of :data:`TARGETS`, the masks must hold instance
        labels; :data:`MEMBRANES` judges the cells of its masks (validated as the
        ``"mask"`` target's).
    regions : Regions
        The decoder's independent regions, for block-wise decoding of large images.
    split : float or None
        The decoder's split when the model has no calibrated one.
    splits : tuple
        The splits the calibration tries (None: no split).
    thresholds : tuple, default=THRESHOLDS
        The thresholds the calibration tries.
    n_classes : int or None
        The classes the target derives (None: as many as the masks have).
    default_classes : int or None, default=None
        The classes a preset sets when the target is chosen alone (None: ``n_classes``).
    min_classes : int, default=2
    classes : str
        What the classes are, for error messages.
    reach : int or None, default=None
        Pixels of the mask around a pixel that ``encode`` reads to give its class, so
        that training on a mask larger than memory reads only a window and that margin
        (:class:`~skunet.lazy_windows.LazyClasses`). None (the safe default for a new
        instance target): the whole object and one pixel around it, with the objects
        renumbered, so ``encode`` must then depend on the objects' shapes, not their ids.
    """

    name: str
    encode: Callable[[np.ndarray, int], np.ndarray]
    decode: Callable[[np.ndarray, float, float | None], np.ndarray]
    decoder: str
    regions: Regions
    instance_labels: bool
    split: float | None
    splits: tuple
    thresholds: tuple = THRESHOLDS
    n_classes: int | None = None
    default_classes: int | None = None
    min_classes: int = 2
    classes: str = ""
    reach: int | None = None

    @property
    def preset_classes(self) -> int:
        """The classes a preset sets when only the target is chosen.

        >>> TARGETS["mask"].preset_classes, TARGETS["distance"].preset_classes
        (2, 5)
        """
        return self.default_classes or self.n_classes or self.min_classes

    def check_classes(self, n_classes: int) -> None:
        """ValueError unless ``n_classes`` is what this target derives."""
        if self.n_classes is not None and n_classes != self.n_classes:
            raise ValueError(
                f"target={self.name!r} derives {self.n_classes} classes ({self.classes}); "
                f"set n_classes={self.n_classes}, not {n_classes}"
            )
        if n_classes < self.min_classes:
            raise ValueError(
                f"target={self.name!r} derives {self.classes}; set n_classes to "
                f"{self.min_classes} or more, not {n_classes}"
            )


def decoding(target: str, membranes: bool = False) -> Target:
    """The record whose decoder a model with this ``target`` uses: :data:`MEMBRANES` for
    a binary membrane model (``membranes``), else the target's own.

    >>> decoding("mask", membranes=True).name, decoding("distance").split
    ('membranes', 0.5)
    """
    return MEMBRANES if membranes and target == "mask" else TARGETS[target]


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


def distance_classes(labels: np.ndarray, levels: int) -> np.ndarray:
    """Instance labels to 0 background / ``1 .. levels``: each object's distance to its
    border, normalised by the object's largest and cut into ``levels`` equal steps.

    The classes of the Deep Watershed Transform (Bai & Urtasun, 2017): a quantised
    energy whose top levels are one seed per object and whose lowest level lies between
    touching objects, trained with cross-entropy like any class map. An object's
    distance is to the nearest pixel that is not its own (background or a neighbour);
    where an object is cut by the image's edge, the distance does not fall there, as the
    object goes on outside. Normalised per object, like StarDist's object probability,
    so that small and large nuclei both peak at ``levels``.

    >>> lab = np.zeros((7, 7), int); lab[1:6, 1:6] = 1
    >>> distance_classes(lab, levels=3)[3].tolist()
    [0, 1, 2, 3, 2, 1, 0]
    """
    labels = np.asarray(labels)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    out = np.zeros(labels.shape, dtype=np.uint8)
    h, w = labels.shape
    for lab, box in enumerate(ndi.find_objects(np.where(labels > 0, labels, 0)), 1):
        if box is None:
            continue
        r0, r1 = max(box[0].start - 1, 0), min(box[0].stop + 1, h)
        c0, c1 = max(box[1].start - 1, 0), min(box[1].stop + 1, w)
        own = labels[r0:r1, c0:c1] == lab
        # one pixel of the object's surroundings, the object itself beyond the image edge
        distance = ndi.distance_transform_edt(np.pad(own, 1, mode="edge"))[1:-1, 1:-1]
        level = np.ceil(levels * distance / distance.max()).astype(np.uint8)
        out[r0:r1, c0:c1][own] = np.maximum(level[own], 1)
    return out


def _classes_of_mask(mask: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return (mask > 0).astype(np.uint8)
    return mask.astype(np.uint8 if n_classes <= 256 else np.int32)


def mask_classes(mask: np.ndarray, n_classes: int, target: str = "mask") -> np.ndarray:
    """A validated mask as the class map (uint8) the network is trained on (the
    target's ``encode``); a Dask mask gives a :class:`~skunet.lazy_windows.LazyClasses`.

    >>> mask_classes(np.array([[0, 7]]), n_classes=2)
    array([[0, 1]], dtype=uint8)
    """
    if is_lazy(mask):  # a Dask label image larger than memory, encoded window by window
        # by name, so that DataLoader workers started by spawning can unpickle it
        encode = functools.partial(mask_classes, n_classes=n_classes, target=target)
        return LazyClasses(mask, encode, TARGETS[target].reach)
    return TARGETS[target].encode(mask, n_classes)


TARGETS: dict[str, Target] = {
    "mask": Target(
        name="mask",
        encode=_classes_of_mask,
        decode=lambda p, threshold, split: label_components(_foreground(p), threshold),
        decoder="label_components",
        regions=Regions(_above, connectivity=2, whole=True),
        instance_labels=False,
        reach=0,  # each pixel's class is its own value
        split=None,
        splits=(None,),
        default_classes=2,  # binary
        classes="class indices; binary masks: background / foreground",
    ),
    "boundary": Target(
        name="boundary",
        encode=lambda mask, n_classes: boundary_classes(mask),
        decode=lambda p, threshold, split: watershed_instances(1 - p[0], p[2], threshold, split),
        decoder="watershed_instances",
        # the split normalises by the image's largest distance
        regions=Regions(lambda p, threshold: 1 - p[0] > threshold, 1, split_local=False),
        instance_labels=True,
        split=0.5,  # pixels of distance-transform height
        splits=(None, 0.5, 1.0, 2.0, 3.0),
        n_classes=3,
        min_classes=3,
        classes="background, interior, boundary",
        reach=1,  # find_boundaries compares each pixel with its 4 neighbours
    ),
    "distance": Target(
        name="distance",
        encode=lambda mask, n_classes: distance_classes(mask, n_classes - 1),
        decode=distance_instances,
        decoder="distance_instances",
        regions=Regions(distance_mask, connectivity=1, halo=4),  # the 1-px Gaussian's reach
        instance_labels=True,
        split=0.5,  # normalised distance of the seeds
        splits=(None, 0.3, 0.4, 0.5, 0.6, 0.7),
        min_classes=3,
        default_classes=5,  # 4 levels: the nuclei recipe's (benchmarks/nuclei.py)
        classes="the background and n_classes - 1 >= 2 distance levels",
        # reach None: each object's distance transform, normalised by its largest
    ),
}
"""The targets by name (see :class:`Target`)."""

MEMBRANES = Target(
    name="membranes",
    encode=_classes_of_mask,
    decode=lambda p, threshold, split: membrane_instances(_foreground(p), threshold, split),
    decoder="membrane_instances",
    # split=None: connected components; a split agglomerates basins over the whole image
    regions=Regions(_above, connectivity=2, whole=True, split_local=False),
    instance_labels=True,  # the cells, judged by V_rand in the calibration
    # the strength of a border (membrane_instances) that keeps two cells apart. On the EM
    # benchmark's five folds (em.py --config cpu) 0.85 with seeds at 0.5 gave V_rand 0.959
    # on average, connected components at 0.5 0.948 (0.887 on fold 1, where a cell's dark
    # inside cut it into pieces); benchmarks/results/em.json. Weighing borders by contrast
    # raised these uncalibrated cells on three sets of networks (em_decoder_grid.json)
    split=0.85,
    splits=(None, 0.75, 0.8, 0.85, 0.9, 0.95),
    # seeds above the faint spots of a membrane keep its two cells apart
    thresholds=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    n_classes=2,
    classes="membrane / cell",
    reach=0,
)
"""The decoding of binary membrane models (EM cells, :func:`decoding`)."""


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


def _border_weights(instances: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels (``instances == 0``).

    ``d1`` / ``d2`` are the distances to the nearest and second-nearest cell. Each cell's
    distance transform is computed only within its bounding box grown by the distance
    beyond which the term is below 1e-3 (d2 alone exceeds it there), so the cost grows
    with the cells' area plus a fixed margin each, never with cells x image pixels.
    """
    h, w = instances.shape
    reach = math.ceil(sigma * math.sqrt(2 * math.log(max(w0, 1e-3) / 1e-3)))
    d1 = np.full((h, w), np.inf, dtype=np.float32)
    d2 = np.full((h, w), np.inf, dtype=np.float32)
    for lab, box in enumerate(ndi.find_objects(instances), 1):
        if box is None:
            continue
        r0, r1 = max(box[0].start - reach, 0), min(box[0].stop + reach, h)
        c0, c1 = max(box[1].start - reach, 0), min(box[1].stop + reach, w)
        d = ndi.distance_transform_edt(instances[r0:r1, c0:c1] != lab).astype(np.float32)
        near, second = d1[r0:r1, c0:c1], d2[r0:r1, c0:c1]
        second[...] = np.where(d < near, near, np.minimum(second, d))
        near[...] = np.minimum(near, d)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return np.where(instances == 0, border, 0).astype(np.float32)


def class_balance_weights(classes: np.ndarray) -> np.ndarray:
    """Per-pixel ``w_c``: each class present gets the same total weight, and the weights
    average 1 over the pixels that count (``classes >= 0``; negative pixels get 0).

    >>> class_balance_weights(np.array([0, 0, 0, 1, -1])).astype(float).round(3).tolist()
    [0.667, 0.667, 0.667, 2.0, 0.0]
    """
    classes = np.asarray(classes)
    valid = classes >= 0
    values, counts = np.unique(classes[valid], return_counts=True)
    out = np.zeros(classes.shape, dtype=np.float32)
    if len(values):
        per_class = valid.sum() / (len(values) * counts)
        out[valid] = per_class[np.searchsorted(values, classes[valid])]
    return out


def unet_weight_map(
    labels_or_mask: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    classes: np.ndarray | None = None,
    balance: bool = True,
) -> np.ndarray:
    """The 2015 U-Net paper's weight map: ``w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / 2 sigma^2)``.

    ``w_c`` balances background and cells (equal total weight, mean 1; 1 everywhere with
    ``balance=False``, which keeps the gap term alone); the second term,
    on background pixels, weighs the thin gaps between neighbouring cells, ``d1`` and
    ``d2`` being the distances to the nearest and second-nearest cell.

    Parameters
    ----------
    labels_or_mask : ndarray (H, W)
        Instance labels (0 = background), or a binary mask whose 4-connected components
        are the cells (e.g. ISBI 2012 labels, 1 = cell interior, 0 = membrane).
        Negative values (padding) get weight 0 and count as neither.
    w0, sigma : float
        Peak weight and width (pixels) of the border term.
    classes : ndarray (H, W) or None
        The class map to balance when there are more than two classes (e.g. background /
        interior / boundary); None balances background against cells.
    balance : bool, default=True
        Whether ``w_c`` balances the classes (the paper) or is 1 on every pixel.

    Returns
    -------
    ndarray (H, W) float32

    Examples
    --------
    >>> mask = np.zeros((5, 9), int); mask[:, :4] = 1; mask[:, 5:] = 1
    >>> w = unet_weight_map(mask)
    >>> border = w - unet_weight_map(mask, w0=0)  # w0 exp(-(1 + 1)^2 / 50) in the gap
    >>> int(w[2].argmax()), round(float(border[2, 4]), 2), float(border[2, 0])
    (4, 9.23, 0.0)
    """
    a = np.asarray(labels_or_mask)
    if a.ndim != 2:
        raise ValueError(f"unet_weight_map needs a 2-D mask, got shape {a.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    valid = a >= 0
    instances = cell_instances(np.where(valid, a, 0))
    if classes is None:
        classes = np.where(valid, instances > 0, -1)
    elif np.shape(classes) != a.shape:
        raise ValueError(f"classes has shape {np.shape(classes)}, the mask {a.shape}")
    if balance:
        weights = class_balance_weights(classes)
    else:
        weights = np.where(np.asarray(classes) >= 0, 1.0, 0.0).astype(np.float32)
    if w0:
        weights += np.where(valid, _border_weights(instances, w0, sigma), 0)
    return weights
