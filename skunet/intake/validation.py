"""The one boundary where user images, masks and parameters are checked.

Everything behind it (datasets, tiling, losses) assumes clean input: images as float32
``(C, H, W)`` arrays and masks as integer ``(H, W)`` arrays of the same height and width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..constraints import Interval, Options, check_params
from ..lazy import check_finite, is_lazy
from ..targets import TARGETS
from ..tiling import IGNORE
from .windows import LazyImage, as_dask, value_range

__all__ = [
    "Interval",
    "Options",
    "as_float32",
    "channels_first",
    "check_images",
    "check_masks",
    "check_params",
    "check_target",
    "lookup",
    "to_float_image",
]


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape} and dtype {obj.dtype}"
    return f"a {type(obj).__name__}"


def _as_items(X: Any, name: str) -> list[Any]:
    """Split ``X`` (a sequence of arrays or one stacked ndarray) into items."""
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise TypeError(f"{name} must be a list of images or a stacked ndarray, got {_describe(X)}")
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim not in (3, 4):
            raise ValueError(
                f"a stacked {name} must have shape (N, H, W) or (N, H, W, C), got {X.shape}"
            )
        items = list(X)
    else:
        items = list(X)
    if not items:
        raise ValueError(f"{name} is empty: pass at least one image")
    return items


def _as_array(item: Any, label: str) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, (str, bytes)) or not hasattr(item, "__array__"):
        raise TypeError(
            f"{label} is {_describe(item)}, expected an image array; read files with "
            "skunet.datasets.read_image_folder"
        )
    return np.asarray(item)


def as_float32(a: np.ndarray) -> np.ndarray:
    """Pixel values as float32: integers scaled by their dtype's maximum (uint8 / 255,
    uint16 / 65535, as ``skimage.img_as_float`` does), floats kept as they are.

    >>> as_float32(np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
    """
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)
    return a.astype(np.float32, copy=False)


def channels_first(image: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` view of an ``(H, W)`` or ``(H, W, C)`` image (no copy)."""
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def to_float_image(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, C)`` image as contiguous float32 ``(C, H, W)``.

    >>> to_float_image(np.full((2, 3), 255, np.uint8)).tolist()
    [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]
    """
    return np.ascontiguousarray(as_float32(channels_first(image)))


def check_images(
    X: Any,
    *,
    n_channels: int | None = None,
    name: str = "X",
    as_float: bool = True,
    lazy: bool = False,
) -> list[np.ndarray]:
    """Validate images and return them as float32 ``(C, H, W)`` arrays.

    Parameters
    ----------
    X : list of array-like or ndarray
        Images ``(H, W)`` or ``(H, W, C)``, or a stack ``(N, H, W)`` / ``(N, H, W, C)``.
    n_channels : int, optional
        Channels the images must have (a fitted model's ``n_channels_in_``).
    name : str, default="X"
        Name used in error messages.
    as_float : bool, default=True
        Return contiguous float32 copies; False returns ``(C, H, W)`` views of the
        images in their own dtype (convert windows with :func:`as_float32`), which keeps
        memory low when predicting very large images.
    lazy : bool, default=False
        Accept Dask and Zarr images (``X`` one such image, or items of a list) as
        :class:`~skunet.intake.windows.LazyImage` objects, checked without holding them in memory
        (``fit``: training reads only the windows it samples).

    Raises
    ------
    TypeError
        An item is not an array or not numeric.
    ValueError
        Empty input, wrong dimensionality, empty images, channel counts that differ,
        NaN or infinite pixels. The message names the item (``X[3]``) and its shape.

    Examples
    --------
    >>> [im.shape for im in check_images([np.zeros((4, 5)), np.zeros((6, 7))])]
    [(1, 4, 5), (1, 6, 7)]
    >>> check_images([np.zeros((4, 5)), np.zeros((4, 5, 3))])
    Traceback (most recent call last):
    ...
    ValueError: X[1] has 3 channels but X[0] has 1; all images must have the same channels
    """
    if is_lazy(X) and not lazy:
        raise TypeError(
            f"{name} is a {type(X).__module__.split('.')[0]} array: fit, predict, "
            "predict_proba and predict_instances take images larger than memory; score and "
            "calibrate_instances take images in memory (np.asarray(...))"
        )
    items = _as_items([X] if is_lazy(X) else X, name)
    images = []
    first_channels = None
    for i, item in enumerate(items):
        label = f"{name}[{i}]"
        arr = as_dask(item) if lazy and is_lazy(item) else _as_array(item, label)
        if (
            arr.dtype == object
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)
            or np.iscomplexobj(arr)
        ):
            raise TypeError(f"{label} has dtype {arr.dtype}; images must be real numbers")
        if arr.ndim not in (2, 3):
            raise ValueError(f"{label} has shape {arr.shape}; an image must be (H, W) or (H, W, C)")
        if min(arr.shape) == 0:
            raise ValueError(f"{label} has shape {arr.shape}; images must not be empty")
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        if arr.ndim == 3 and arr.shape[2] > 16 and arr.shape[0] <= 4:
            raise ValueError(
                f"{label} has shape {arr.shape}, which looks channels-first; images are "
                f"channels-last: use np.moveaxis({label}, 0, -1)"
            )
        if first_channels is None:
            first_channels = channels
        elif channels != first_channels:
            raise ValueError(
                f"{label} has {channels} channels but {name}[0] has {first_channels}; "
                "all images must have the same channels"
            )
        if n_channels is not None and channels != n_channels:
            raise ValueError(
                f"{label} has {channels} channel(s) but the model was fitted on images "
                f"with {n_channels}"
            )
        if np.issubdtype(arr.dtype, np.floating):
            if is_lazy(arr):  # one pass; the message names the first bad pixel's block
                check_finite(arr, label)
            elif bad := int(arr.size - np.isfinite(arr).sum()):
                raise ValueError(f"{label} (shape {arr.shape}) has {bad} NaN or infinite pixel(s)")
            big = np.finfo(np.float32).max
            if arr.dtype.itemsize > 4:
                low, high = value_range(arr)
                if high > big or low < -big:
                    raise ValueError(f"{label} has values beyond the float32 range")
        if is_lazy(arr):
            images.append(LazyImage(arr if arr.ndim == 3 else arr[..., None], as_float32))
        else:
            images.append(to_float_image(arr) if as_float else channels_first(arr))
    return images


def lookup(registry: dict[str, Any], name: str, kind: str) -> Any:
    """``registry[name]``, or a ValueError that lists the valid names.

    >>> lookup({"a": 1}, "b", "model")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'b'; choose one of ['a']
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}") from None


def check_target(target: str, n_classes: int) -> None:
    """Check the ``target`` / ``n_classes`` pair of a segmenter (the target's record in
    :data:`~skunet.targets.TARGETS` says what it derives)."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is not supported; use one of {list(TARGETS)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {n_classes!r}")
    if n_classes < 2:
        raise ValueError(
            f"n_classes must be at least 2 (background and one class), got {n_classes}"
        )
    TARGETS[target].check_classes(n_classes)


def check_masks(
    y: Any,
    images: Sequence[np.ndarray],
    *,
    n_classes: int,
    target: str = "mask",
    name: str = "y",
    instances: bool | None = None,
) -> list[np.ndarray]:
    """Validate masks against their (already checked) images.

    Returns the masks as integer ``(H, W)`` arrays. Class masks (``target="mask"``)
    must hold ``0..n_classes-1``; with ``n_classes == 2`` any value above 0 counts as
    foreground, and a boolean mask (e.g. ``image > threshold``) is accepted as
    False = background, True = foreground. Instance masks (``instances``; by default
    whether the target needs instance labels, as ``"boundary"`` and ``"distance"`` do)
    must be non-negative. Any mask may mark pixels nobody annotated with
    :data:`~skunet.tiling.IGNORE` (-1, a signed dtype): training skips them.

    Examples
    --------
    >>> ims = check_images([np.zeros((2, 2))])
    >>> check_masks([np.array([[0, 3], [1, 0]])], ims, n_classes=3)
    Traceback (most recent call last):
    ...
    ValueError: y[0] holds label 3 but n_classes=3 allows 0..2
    """
    if y is None:
        raise TypeError(f"{name} is required: pass one mask per image")
    items = _as_items([y] if is_lazy(y) else y, name)
    if len(items) != len(images):
        raise ValueError(f"X has {len(images)} images but {name} has {len(items)} masks")
    if instances is None:
        instances = TARGETS[target].instance_labels
    masks = []
    for i, (item, image) in enumerate(zip(items, images)):
        label = f"{name}[{i}]"
        # a Dask / Zarr mask stays lazy (its values are checked in one streamed pass)
        mask = as_dask(item) if is_lazy(item) else _as_array(item, label)
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[..., 0]
        if mask.dtype == bool:
            if instances or n_classes != 2:
                raise TypeError(
                    f"{label} is a boolean mask, which says foreground or not, but this "
                    f"segmenter needs {'instance labels' if instances else 'class indices'} "
                    f"(n_classes={n_classes}, target={target!r}); pass integer labels"
                )
            mask = mask.view(np.uint8)  # False = background, True = foreground
        if not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(
                f"{label} has dtype {mask.dtype}; masks must hold integer labels "
                f"(use {label}.astype(int) if the values are whole numbers)"
            )
        if mask.ndim != 2:
            raise ValueError(f"{label} has shape {mask.shape}; a mask must be (H, W)")
        if mask.shape != image.shape[1:]:
            raise ValueError(
                f"{label} has shape {mask.shape} but X[{i}] is {image.shape[1:]} "
                "(height, width); each mask must match its image"
            )
        low, high = (int(v) for v in value_range(mask))
        if low < IGNORE:
            raise ValueError(
                f"{label} holds negative label {low}; labels must be >= 0, or {IGNORE} "
                "where nothing is annotated"
            )
        if not instances and n_classes > 2 and high >= n_classes:
            raise ValueError(
                f"{label} holds label {high} but n_classes={n_classes} allows 0..{n_classes - 1}"
            )
        masks.append(mask)
    return masks
