"""Training targets: how masks become class maps and predictions become objects.

:data:`TARGETS` is the one registry of targets (``"mask"``, ``"boundary"``,
``"distance"``): each :class:`Target` record declares how validated masks become the
classes the network learns, how many classes that takes, whether the masks must hold
instance labels, and how compact probabilities become instance labels (decoder, default
split, calibration grid). :data:`MEMBRANES` is the decoding of binary models whose
background is membrane between touching cells (a task's ``membranes``). Validation, the
:class:`~skunet.predictor.Predictor`, the calibration and the presets read them; a new
target is one record. Also here: the encodings themselves (the U-Net weight map is
:func:`skunet.losses.unet_weight_map`, beside the loss that uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from .instances import (
    Regions,
    distance_instances,
    distance_mask,
    label_components,
    membrane_instances,
    watershed_instances,
)
from .tiling import IGNORE

__all__ = [
    "MEMBRANES",
    "TARGETS",
    "THRESHOLDS",
    "Target",
    "boundary_classes",
    "class_margin_uncertainty",
    "decoding",
    "distance_classes",
    "foreground_uncertainty",
    "mask_classes",
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


def class_margin_uncertainty(p: np.ndarray) -> np.ndarray:
    """Per-pixel uncertainty of compact probabilities ``(K', H, W)``: one minus the
    margin between the two most probable classes (0: certain, 1: a tie at the decision),
    float32 ``(H, W)``.

    >>> p = np.array([[[0.5, 0.9]], [[0.3, 0.05]], [[0.2, 0.05]]])
    >>> [round(float(v), 2) for v in class_margin_uncertainty(p)[0]]
    [0.8, 0.15]
    >>> class_margin_uncertainty(np.array([[[0.5, 1.0]]])).tolist()  # one logit
    [[1.0, 0.0]]
    """
    p = np.asarray(p, dtype=np.float32)
    if p.shape[0] == 1:
        return 1 - np.abs(2 * p[0] - 1)
    top = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
    return 1 - (top[1] - top[0])


def foreground_uncertainty(p: np.ndarray) -> np.ndarray:
    """Per-pixel uncertainty of the foreground decision alone (``1 - p[0]`` against 0.5),
    for targets whose other classes are levels of one object, not decisions.

    >>> foreground_uncertainty(np.array([[[0.5, 0.0]], [[0.2, 0.5]], [[0.3, 0.5]]])).tolist()
    [[1.0, 0.0]]
    """
    return 1 - np.abs(1 - 2 * np.asarray(p[0], dtype=np.float32))


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
    uncertainty : callable, default=class_margin_uncertainty
        ``uncertainty(p) -> (H, W)`` in [0, 1] of compact probabilities: how close each
        pixel is to the decision the instances come from (``predict_uncertainty``).
    reach : int or None, default=None
        Pixels of the mask around a pixel that ``encode`` reads to give its class, so
        that training on a mask larger than memory reads only a window and that margin
        (:class:`~skunet.intake.windows.LazyClasses`). None (the safe default for a new
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
    uncertainty: Callable[[np.ndarray], np.ndarray] = class_margin_uncertainty

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
    target's ``encode``), of a mask in memory (a Dask mask's is encoded window by
    window: :class:`~skunet.intake.windows.LazyClasses`).

    Pixels a mask marks as not annotated (:data:`~skunet.tiling.IGNORE`, -1) are
    encoded as background is, then given back as ``IGNORE`` (an int16 map), so that the
    loss and the scores skip them: cells nobody painted are not taught as background.

    >>> mask_classes(np.array([[0, 7]]), n_classes=2)
    array([[0, 1]], dtype=uint8)
    >>> mask_classes(np.array([[0, 7, -1]]), n_classes=2)
    array([[ 0,  1, -1]], dtype=int16)
    """
    unknown = mask < 0 if np.issubdtype(mask.dtype, np.signedinteger) else None
    if unknown is None or not unknown.any():
        return TARGETS[target].encode(mask, n_classes)
    classes = TARGETS[target].encode(np.where(unknown, 0, mask), n_classes).astype(np.int16)
    classes[unknown] = IGNORE
    return classes


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
        uncertainty=foreground_uncertainty,  # neighbouring levels are no decision
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
