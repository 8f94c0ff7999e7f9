"""The ISBI 2012 challenge's Rand and information scores of cell segmentations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from skimage.segmentation import expand_labels

from ..instances import cell_instances

__all__ = [
    "PROTOCOL_THRESHOLDS",
    "ChallengeScores",
    "RandScores",
    "challenge_scores",
    "pixel_error",
    "rand_scores",
]


class RandScores(NamedTuple):
    """ISBI 2012 challenge scores of a segmentation (higher is better but ``pixel_error``)."""

    v_rand: float
    v_rand_split: float
    v_rand_merge: float
    v_info: float
    v_info_split: float
    v_info_merge: float
    pixel_error: float


def _ratio(x: float, y: float) -> float:
    return min(float(x / y), 1.0) if y > 0 else 1.0  # 1 + 2e-16 is rounding


def pixel_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of pixels whose cell / membrane class differs (cells are > 0).

    >>> pixel_error(np.array([[1, 0], [1, 1]]), np.array([[1, 1], [1, 1]]))
    0.25
    """
    return float(np.mean((np.asarray(y_true) > 0) != (np.asarray(y_pred) > 0)))


def _rand_scores(y_true: np.ndarray, y_pred: np.ndarray, thin: bool) -> RandScores:
    true, pred = cell_instances(y_true), cell_instances(y_pred)
    error = pixel_error(true, pred)
    if thin and pred.any():  # predicted membranes thinned to the seams between cells
        pred = expand_labels(pred, distance=max(pred.shape))
    inside = true > 0  # foreground-restricted: the true membrane does not count
    if not inside.any():
        return RandScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, error)
    _, t = np.unique(true[inside], return_inverse=True)
    _, q = np.unique(pred[inside], return_inverse=True)
    n = inside.sum()
    _, joint = np.unique(t.astype(np.int64) * (q.max() + 1) + q, return_counts=True)
    p_ij = joint / n
    p_t = np.bincount(t) / n  # segments of the truth
    p_q = np.bincount(q) / n  # of the prediction (its membrane, 0, is one segment)
    sum_ij, sum_t, sum_q = (p_ij**2).sum(), (p_t**2).sum(), (p_q**2).sum()
    h_t, h_q = -(p_t * np.log(p_t)).sum(), -(p_q * np.log(p_q)).sum()
    mutual = h_t + h_q + (p_ij * np.log(p_ij)).sum()
    return RandScores(
        v_rand=_ratio(2 * sum_ij, sum_t + sum_q),
        v_rand_split=_ratio(sum_ij, sum_t),
        v_rand_merge=_ratio(sum_ij, sum_q),
        v_info=_ratio(2 * mutual, h_t + h_q),
        v_info_split=_ratio(mutual, h_q),
        v_info_merge=_ratio(mutual, h_t),
        pixel_error=error,
    )


def rand_scores(
    y_true: np.ndarray | Sequence[np.ndarray],
    y_pred: np.ndarray | Sequence[np.ndarray],
    thin: bool = True,
) -> RandScores:
    """Foreground-restricted Rand and information scores, as the ISBI 2012 challenge.

    Cells are the segments and membrane the boundary: binary masks (1 = cell, 0 =
    membrane) are split into 4-connected cells, other integer images are taken as
    labels. Only pixels inside true cells count. With ``thin`` (the challenge's "border
    thinning") every predicted membrane pixel joins its nearest predicted cell, so that
    thick predicted membranes cost nothing and only gaps (merges) and spurious
    membranes (splits) do; without it the predicted membrane pixels form one segment of
    their own (scikit-image's ``adapted_rand_error`` convention). With p_ij the joint
    distribution of true segment i and predicted segment j over those pixels, t_i and
    q_j its marginals:

    - ``v_rand = 2 sum p_ij^2 / (sum t_i^2 + sum q_j^2)``, the harmonic mean of
      ``v_rand_split = sum p_ij^2 / sum t_i^2`` (1 without split cells) and
      ``v_rand_merge = sum p_ij^2 / sum q_j^2`` (1 without merged cells);
    - ``v_info = 2 I(T; Q) / (H(T) + H(Q))``, the harmonic mean of
      ``v_info_split = I / H(Q)`` and ``v_info_merge = I / H(T)``;
    - ``pixel_error``: the fraction of all pixels whose cell / membrane class differs.

    Lists of images give the mean of each score over the images (slices).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 1, 1]])
    >>> rand_scores(truth, truth).v_rand
    1.0
    >>> s = rand_scores(truth, np.array([[1, 1, 1, 1, 1]]))  # the two cells merged
    >>> round(s.v_rand, 3), s.v_rand_split, round(s.pixel_error, 2)
    (0.667, 1.0, 0.2)
    >>> rand_scores(truth, np.array([[1, 0, 0, 0, 1]])).v_rand  # thick membrane: no cost
    1.0
    """
    if isinstance(y_true, np.ndarray) and y_true.dtype != object and y_true.ndim == 2:
        y_true, y_pred = [y_true], [np.asarray(y_pred)]
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true masks but {len(y_pred)} predicted masks")
    scores = []
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        t, p = np.asarray(t), np.asarray(p)
        if t.shape != p.shape or t.ndim != 2:
            raise ValueError(f"mask {i}: y_true has shape {t.shape} but y_pred {p.shape}")
        for name, a in (("y_true", t), ("y_pred", p)):
            if not (a.dtype == bool or np.issubdtype(a.dtype, np.integer)) or a.min() < 0:
                raise ValueError(
                    f"mask {i}: {name} must hold a binary mask or non-negative integer "
                    f"labels, got dtype {a.dtype}"
                )
        scores.append(_rand_scores(t, p, thin))
    return RandScores(*np.mean(np.array(scores, dtype=np.float64), axis=0).tolist())


class ChallengeScores(NamedTuple):
    """The ISBI 2012 protocol's scores: the best mean over slices of each score across
    binarisation thresholds of the cell probability, and the threshold that gave it."""

    v_rand: float
    v_rand_threshold: float
    v_info: float
    v_info_threshold: float


PROTOCOL_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(11))
"""The cell-probability thresholds the challenge protocol tries (0.0, 0.1, ... 1.0)."""


def challenge_scores(
    y_true: np.ndarray | Sequence[np.ndarray],
    proposal: np.ndarray | Sequence[np.ndarray],
    thresholds: Sequence[float] = PROTOCOL_THRESHOLDS,
) -> ChallengeScores:
    """V_rand and V_info as the ISBI 2012 challenge reports them, from cell probabilities.

    For each threshold t (0.0 to 1.0 in steps of 0.1, as the challenge's Fiji script
    runs ``getMaximalVRandAfterThinning`` / ``getMaximalVInfoAfterThinning``), every
    proposal is binarised (cell where ``p > t``), split into 4-connected cells, its
    membranes thinned away (each membrane pixel joins its nearest cell) and scored
    against the unthinned truth by :func:`rand_scores`; the scores are averaged over the
    slices, and the maximum over thresholds is reported with its threshold, separately
    for V_rand and V_info. An integer proposal (a label image, or a binary mask) is
    scored as it is: one "threshold", reported as nan.

    The thinning here gives each membrane pixel to its nearest cell
    (``skimage.segmentation.expand_labels``); Fiji thins with a watershed of the
    probability map, which can place a seam elsewhere inside a thick membrane. Both
    leave merges (gaps) and splits (spurious membranes) to be counted; scores can
    differ slightly where a thick membrane is split unevenly.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 1, 1]])
    >>> p = np.array([[0.9, 0.8, 0.3, 0.7, 0.9]])  # a faint membrane
    >>> s = challenge_scores(truth, p)
    >>> s.v_rand, s.v_rand_threshold  # 0.3 < t < 0.7 separates the two cells
    (1.0, 0.3)
    >>> round(rand_scores(truth, (p > 0.2).astype(np.uint8)).v_rand, 3)  # merged below
    0.667
    """
    if isinstance(y_true, np.ndarray) and y_true.ndim == 2:
        y_true, proposal = [y_true], [np.asarray(proposal)]
    proposal = [np.asarray(p) for p in proposal]
    if all(p.dtype == bool or np.issubdtype(p.dtype, np.integer) for p in proposal):
        s = rand_scores(y_true, proposal)
        return ChallengeScores(s.v_rand, float("nan"), s.v_info, float("nan"))
    best = {}
    for t in thresholds:
        s = rand_scores(y_true, [(p > t).astype(np.uint8) for p in proposal])
        for name in ("v_rand", "v_info"):
            if name not in best or getattr(s, name) > best[name][0]:
                best[name] = (getattr(s, name), float(t))
    return ChallengeScores(*best["v_rand"], *best["v_info"])
