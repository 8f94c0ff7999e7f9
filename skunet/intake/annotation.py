"""Which pixels of a mask somebody annotated.

A mask marks the pixels nobody annotated with :data:`~skunet.tiling.IGNORE` (-1, in a
signed dtype): the loss skips them and the calibration drops predicted objects lying
mostly there. Painting every cell of an image is what makes labels expensive, so
masks come partly annotated: a Labels layer painted in a rectangle, or a public truth
such as the Cell Tracking Challenge's, where some frames label a few of their cells
(DIC-HeLa's frame 67 of sequence 01 labels 3 of about 15). Taken as complete, such a
mask teaches its unlabelled cells as background; :func:`partly_annotated` finds the
likely ones and :func:`labelled_only` keeps what they teach to their labelled cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tiling import IGNORE
from .validation import channels_first

__all__ = ["PARTIAL_SHARE", "labelled_only", "partly_annotated"]

PARTIAL_SHARE = 0.5
"""A complete-looking mask labelling under this share of the masks' median labelled
fraction is checked for unlabelled objects (DIC-HeLa's frame 67: 0.2 of the median)."""
_SIDE = 512  # images are strided down to about this side for the check
_SAMPLES = 4000  # pixels drawn from each other image to learn what objects look like


def labelled_only(mask: Any, where: np.ndarray | None = None) -> np.ndarray:
    """``mask`` as int32 with :data:`~skunet.tiling.IGNORE` outside ``where`` (default:
    its labelled pixels, ``mask > 0``): annotated there only. ``TypeError`` for a mask
    that does not hold integer labels."""
    mask = np.asarray(mask)
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise TypeError(f"a mask of integer labels is needed, not dtype {mask.dtype}")
    where = mask > 0 if where is None else where
    return np.where(where, mask.astype(np.int32), IGNORE)  # signed before the -1


def _features(image: Any, step: int) -> np.ndarray:
    """``(H', W', F)`` pixel features (intensity, edges, texture at 1-16 px) of an image
    strided by ``step``, its channels averaged, its 1st percentile set to 0 and its
    maximum to 1 (a percentile for the top would stretch the noise of a nearly empty
    field)."""
    from skimage.feature import multiscale_basic_features

    gray = channels_first(np.asarray(image)).astype(np.float32).mean(0)[::step, ::step]
    low, high = np.percentile(gray, 1), gray.max()
    gray = np.clip((gray - low) / max(float(high - low), 1e-6), 0, 1)
    return multiscale_basic_features(gray, sigma_min=1, sigma_max=16).astype(np.float32)


def _unlabelled_objects(images: Sequence[Any], masks: list[np.ndarray], teachers, tested):
    """Per image of ``tested``, the share of its pixels that a pixel classifier, taught
    objects and background by the images of ``teachers``, calls object where its mask
    has none."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    step = lambda m: max(1, -(-max(m.shape) // _SIDE))  # noqa: E731
    features, labels = [], []
    for j in teachers:
        s = step(masks[j])
        f = _features(images[j], s)
        inside = (masks[j][::s, ::s] > 0).ravel()
        take = rng.choice(inside.size, min(_SAMPLES, inside.size), replace=False)
        features.append(f.reshape(-1, f.shape[-1])[take])
        labels.append(inside[take])
    if len(np.unique(np.concatenate(labels))) < 2:
        return [0.0 for _ in tested]
    forest = RandomForestClassifier(50, max_depth=10, random_state=0, n_jobs=1)
    forest.fit(np.concatenate(features), np.concatenate(labels))
    shares = []
    for i in tested:
        s = step(masks[i])
        f = _features(images[i], s)
        found = forest.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])
        shares.append(float((found & (masks[i][::s, ::s] <= 0)).mean()))
    return shares


def partly_annotated(
    images: Sequence[Any], masks: Sequence[Any], share: float = PARTIAL_SHARE
) -> list[int]:
    """The indices of the masks that likely label only some of their objects.

    A mask that marks no pixel :data:`~skunet.tiling.IGNORE` claims to be complete.
    Among three or more, one labelling under ``share`` times the median fraction of its
    image that the masks label is checked: a pixel classifier (scikit-image's
    multiscale features, a random forest) learns objects and background from the
    complete masks that label a usual share, and the mask is taken as partial where
    the classifier finds more unlabelled object than labelled in its image (and at
    least ``share`` times the median). So a crowded frame with a few cells painted is
    found (DIC-HeLa's frame 67: 0.56 of it unlabelled cell, 0.09 labelled; the complete
    frames 0.08-0.16 against 0.39-0.53), and a sparse field among dense ones is not
    (DSB2018, 100 draws of 10 mixed images: 1 of 1000 taken, a field under a bright
    haze). An empty mask (an image without objects) is complete. Masks that are not 2-D
    integer labels of their images' shapes: none (``fit`` refuses them, by name).
    """
    arrays = [np.asarray(m) for m in masks]
    if len(arrays) < 3 or len(images) != len(arrays):
        return []  # too few to compare; unpaired: for ``fit`` to refuse, by name
    shapes = [channels_first(np.asarray(x)).shape[1:] for x in images]
    if any(
        m.ndim != 2 or not np.issubdtype(m.dtype, np.integer) or m.shape != shape
        for m, shape in zip(arrays, shapes)
    ):
        return []  # not label masks of these images: for ``fit`` to refuse, by name
    fractions = np.array([np.count_nonzero(m > 0) / max(m.size, 1) for m in arrays])
    median = float(np.median(fractions))
    low = (fractions > 0) & (fractions < share * median)
    complete = [i for i, m in enumerate(arrays) if not (m < 0).any()]  # no -1 marked
    tested = [i for i in complete if low[i]]
    teachers = [i for i in complete if not low[i]]
    if not tested or not teachers:
        return []
    shares = _unlabelled_objects(images, arrays, teachers, tested)
    return [i for i, u in zip(tested, shares) if u > max(fractions[i], share * median)]
