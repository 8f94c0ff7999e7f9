"""Padding-aware segmentation losses: a functional core and thin ``nn.Module`` wrappers.

Targets are integer class maps ``(N, H, W)`` in which :data:`skunet.tiling.IGNORE`
marks pixels that do not count (reflect padding, mirrored borders, batch padding). When
the network's output is smaller than the target ("valid" U-Nets), the target is
centre-cropped to the output, so the loss sees the valid output only. The 2015 U-Net
paper's weight map (:func:`unet_weight_map`), which :class:`WeightMapLoss` computes on
every augmented tile, is here too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from .instances import cell_instances
from .models.blocks import center_crop
from .tiling import IGNORE

__all__ = [
    "PaddedBCEWithLogitsLoss",
    "PaddedCrossEntropyLoss",
    "SoftDiceLoss",
    "WeightMapLoss",
    "class_balance_weights",
    "padded_bce_with_logits",
    "padded_cross_entropy",
    "soft_dice_loss",
    "unet_weight_map",
    "weighted_padded_loss",
]


def _align(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    h, w = logits.shape[-2:]
    if target.shape[-2] < h or target.shape[-1] < w:
        raise ValueError(
            f"the network's output {h}x{w} is larger than the target "
            f"{target.shape[-2]}x{target.shape[-1]}"
        )
    return center_crop(target, h, w)


def padded_bce_with_logits(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy over the pixels that are not ignored.

    ``logits`` is ``(N, 1, H, W)``; ``target`` holds 0, 1 or ``IGNORE``.

    >>> logits = torch.zeros(1, 1, 2, 2)
    >>> target = torch.tensor([[[1, IGNORE], [0, IGNORE]]])
    >>> round(padded_bce_with_logits(logits, target).item(), 4)
    0.6931
    """
    if logits.shape[1] != 1:
        raise ValueError(
            f"binary cross-entropy needs one output channel, the network gives {logits.shape[1]}"
        )
    target = _align(logits, target)
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, device=logits.device)
    return F.binary_cross_entropy_with_logits(
        logits[:, 0][valid], target[valid].to(logits.dtype), pos_weight=pw
    )


def padded_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over the pixels that are not ignored.

    >>> logits = torch.zeros(1, 3, 1, 2)
    >>> round(padded_cross_entropy(logits, torch.tensor([[[2, IGNORE]]])).item(), 4)
    1.0986
    """
    target = _align(logits, target).long()
    if not (target != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)


class PaddedBCEWithLogitsLoss(nn.Module):
    """:func:`padded_bce_with_logits` as a module (one logit, two classes)."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return padded_bce_with_logits(logits, target, self.pos_weight)


class PaddedCrossEntropyLoss(nn.Module):
    """:func:`padded_cross_entropy` as a module (K logits, K classes)."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.device)
        return padded_cross_entropy(logits, target, weight)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the foreground classes, over the pixels that are not ignored.

    One output channel is read as sigmoid foreground probability, several as softmax
    class probabilities (class 0, the background, left out). Sums run over the whole
    batch, so empty patches do not dominate.

    >>> logits = torch.full((1, 1, 2, 2), 20.0)
    >>> round(soft_dice_loss(logits, torch.ones(1, 2, 2, dtype=torch.long)).item(), 4)
    0.0
    """
    target = _align(logits, target).long()
    valid = (target != IGNORE).unsqueeze(1)
    if logits.shape[1] == 1:
        proba = torch.sigmoid(logits)
        onehot = (target == 1).unsqueeze(1)
    else:
        proba = torch.softmax(logits, dim=1)[:, 1:]
        classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        onehot = target.unsqueeze(1) == classes
    proba = proba * valid
    onehot = (onehot & valid).to(proba.dtype)
    dims = (0, 2, 3)
    inter = (proba * onehot).sum(dims)
    total = proba.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + smooth) / (total + smooth)).mean()


class SoftDiceLoss(nn.Module):
    """Soft Dice, optionally added to the padding-aware (binary) cross-entropy.

    Parameters
    ----------
    ce_weight : float, default=1.0
        Weight of the cross-entropy term (BCE for one output channel); 0 gives pure Dice.
    smooth : float, default=1.0
    """

    def __init__(self, ce_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = soft_dice_loss(logits, target, self.smooth)
        if self.ce_weight:
            ce = padded_bce_with_logits if logits.shape[1] == 1 else padded_cross_entropy
            loss = loss + self.ce_weight * ce(logits, target)
        return loss


def weighted_padded_loss(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Per-pixel (binary) cross-entropy times ``weights``, averaged over valid pixels.

    One output channel uses binary cross-entropy, several use cross-entropy; targets and
    weights are centre-cropped to the output like the target alone elsewhere.

    >>> logits = torch.zeros(1, 1, 1, 3)
    >>> target = torch.tensor([[[1, 0, IGNORE]]])
    >>> w = torch.tensor([[[2.0, 0.0, 5.0]]])
    >>> round(weighted_padded_loss(logits, target, w).item(), 4)  # (2 ln 2 + 0) / 2
    0.6931
    """
    target = _align(logits, target)
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(
            logits[:, 0], target.clamp(min=0).to(logits.dtype), reduction="none"
        )
    else:
        per_pixel = F.cross_entropy(logits, target.long(), ignore_index=IGNORE, reduction="none")
    if weights is not None:
        per_pixel = per_pixel * center_crop(weights, *logits.shape[-2:]).to(per_pixel.dtype)
    return per_pixel[valid].sum() / valid.sum()


class WeightMapLoss(nn.Module):
    """The 2015 U-Net loss: (binary) cross-entropy weighted by the paper's weight map
    (:func:`unet_weight_map`).

    The estimator computes the weight map of every training patch after augmentation
    (and of every validation image) by calling :meth:`weight_map`, and passes
    ``(target, weights)`` as the target; a plain target is used unweighted.

    Parameters
    ----------
    w0 : float, default=10.0
    sigma : float, default=5.0
        Peak and width (pixels) of the weight between neighbouring cells.
    balance : bool, default=True
        Balance the classes' total weights (the paper); False weighs every pixel 1 plus
        the gap term.
    """

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, balance: bool = True) -> None:
        super().__init__()
        self.w0 = w0
        self.sigma = sigma
        self.balance = balance

    def weight_map(self, classes: np.ndarray) -> np.ndarray:
        """Weights of a class map (:data:`~skunet.tiling.IGNORE` where it does not count):
        cells are the 4-connected components of the foreground classes, and every class
        present is balanced."""
        cells = np.where(classes >= 0, classes > 0, -1)
        return unet_weight_map(cells, self.w0, self.sigma, classes=classes, balance=self.balance)

    def forward(self, logits: torch.Tensor, target) -> torch.Tensor:
        weights = None
        if isinstance(target, (list, tuple)):
            target, weights = target
        return weighted_padded_loss(logits, target, weights)


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
