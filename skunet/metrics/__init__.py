"""Segmentation metrics, by family, as stardist arranges its own.

- :mod:`.pixel`: IoU and Dice per class, mean and whole-foreground, from one
  confusion-matrix kernel;
- :mod:`.matching`: object metrics following the StarDist project's
  ``stardist.matching`` definitions exactly (the DSB2018 "AP" is ``accuracy = tp /
  (tp + fp + fn)``), with a one-to-one optimal matching of true and predicted objects
  at IoU >= ``thresh``;
- :mod:`.rand`: the ISBI 2012 challenge's foreground-restricted Rand and information
  scores of cell segmentations.
"""

from __future__ import annotations

from .matching import Matching, aji_score, annotated_only, match_dataset, match_instances, seg_score
from .pixel import (
    confusion_matrix,
    dice_score,
    iou_from_confusion,
    iou_score,
    per_image,
    whole_dice_score,
)
from .rand import ChallengeScores, RandScores, challenge_scores, rand_scores

__all__ = [
    "ChallengeScores",
    "Matching",
    "RandScores",
    "aji_score",
    "annotated_only",
    "challenge_scores",
    "confusion_matrix",
    "dice_score",
    "iou_from_confusion",
    "iou_score",
    "match_dataset",
    "match_instances",
    "per_image",
    "rand_scores",
    "seg_score",
    "whole_dice_score",
]
