"""Readers for image folders, the DSB2018 and WBC layouts and the bundled nuclei sample."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .intake.validation import lookup
from .progress import tqdm

__all__ = [
    "IMAGE_EXTENSIONS",
    "WBC_GRAY_LEVELS",
    "as_task_color",
    "load_dsb2018",
    "load_isbi2012",
    "load_sample",
    "load_wbc",
    "paired_files",
    "read_image",
    "read_image_folder",
    "sample_ids",
    "to_color",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as an ndarray (TIFF with tifffile, others with Pillow).

    Raises
    ------
    ValueError
        If the file cannot be read; the message names it.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return tifffile.imread(path)
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except Exception as exc:  # every reader error becomes one clear message
        raise ValueError(f"cannot read image file {str(path)!r}: {exc}") from exc


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder")
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    }


def read_image_folder(
    images_dir: str | os.PathLike, masks_dir: str | os.PathLike
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read images and masks paired by file name (extension aside), sorted by name.

    Parameters
    ----------
    images_dir, masks_dir : path
        Folders of .png, .tif, .bmp or .jpg files.

    Returns
    -------
    X, y : lists of ndarray

    Raises
    ------
    ValueError
        A missing or empty folder, a file without its partner (named), or an unreadable
        file (named).
    """
    pairs = paired_files(images_dir, masks_dir)
    X = [read_image(image) for image, _ in pairs.values()]
    y = [read_image(mask) for _, mask in pairs.values()]
    return X, y


def paired_files(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> dict:
    """``{name: (image path, mask path)}`` in name order; errors as :func:`read_image_folder`."""
    images = _image_files(Path(images_dir))
    masks = _image_files(Path(masks_dir))
    if not images:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {str(images_dir)!r}")
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        shown = [str(images.get(n) or masks[n]) for n in unpaired[:5]]
        more = f" and {len(unpaired) - 5} more" if len(unpaired) > 5 else ""
        raise ValueError(
            f"{len(unpaired)} file(s) have no partner of the same name: {', '.join(shown)}{more}"
        )
    return {n: (images[n], masks[n]) for n in images}


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """An image as grayscale (H, W) or RGB (H, W, 3) uint8, whatever it was stored as."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]  # DSB2018 PNGs are RGBA with an opaque alpha
    if color == "rgb":
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    if image.ndim == 2:
        return image
    if (image == image[..., :1]).all():  # gray stored as RGB
        return np.ascontiguousarray(image[..., 0])
    from skimage.color import rgb2gray
    from skimage.util import img_as_ubyte

    return img_as_ubyte(rgb2gray(image))


def as_task_color(image: np.ndarray, n_channels: int | None) -> np.ndarray:
    """An image as the model's channels: gray (1) or RGB (3) from gray, RGB or RGBA files;
    otherwise as stored, less the alpha channel of an RGBA file."""
    if n_channels == 1:
        return to_color(image, "gray")
    if n_channels == 3:
        return to_color(image, "rgb")
    if n_channels is None and image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3]
    return image


def _read_kaggle(folder: Path, color: str, progress: bool) -> tuple[list, list]:
    """Kaggle's ``<id>/images/<id>.png`` + ``<id>/masks/*.png`` (one PNG per nucleus)."""
    ids = sorted(p for p in folder.iterdir() if p.is_dir())
    if not ids:
        raise ValueError(f"no image folders (<id>/images/<id>.png) in {str(folder)!r}")
    X, y = [], []
    for case in tqdm(ids, desc="DSB2018", unit="image", disable=not progress or len(ids) < 50):
        image_path = case / "images" / f"{case.name}.png"
        if not image_path.is_file():
            raise ValueError(f"{str(case)!r} has no image {case.name}.png in images/")
        mask_paths = sorted((case / "masks").glob("*.png"))
        if not mask_paths:
            raise ValueError(f"{str(case)!r} has no masks/*.png (one PNG per nucleus)")
        image = to_color(read_image(image_path), color)
        labels = np.zeros(image.shape[:2], dtype=np.uint16)
        for k, path in enumerate(mask_paths, 1):
            mask = read_image(path)
            if mask.shape[:2] != labels.shape:
                raise ValueError(
                    f"mask {str(path)!r} is {mask.shape[:2]} but its image is {labels.shape}"
                )
            mask = mask[..., 0] if mask.ndim == 3 else mask
            labels[(mask > 0) & (labels == 0)] = k  # the first mask keeps shared pixels
        X.append(image)
        y.append(labels)
    return X, y


def load_dsb2018(
    root: str | os.PathLike, split: str = "train", color: str = "gray", progress: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Load Kaggle Data Science Bowl 2018 nuclei images and instance labels.

    Two layouts are recognised:

    - ``root/<split>/{images,masks}/<id>.tif``: uint8 images and uint16 instance-label
      masks paired by name (the StarDist-style layout of ``shared/data/dsb2018``);
    - Kaggle's own ``root/stage1_<split>/<id>/images/<id>.png`` with one binary
      ``<id>/masks/*.png`` per nucleus (``root`` may also be the ``stage1_<split>``
      folder itself), merged into one label image (1..n in file-name order; the first
      mask keeps pixels that two masks claim).

    Parameters
    ----------
    root : path
    split : str, default="train"
    color : {"gray", "rgb"}, default="gray"
        Kaggle images are RGBA: ``"gray"`` keeps one channel of gray images and converts
        colour ones with ``skimage.color.rgb2gray``; ``"rgb"`` keeps three channels.
    progress : bool, default=True
        Progress bar for folders of 50 images or more.

    Raises
    ------
    ValueError
        No recognised layout, or a missing, unpaired or unreadable file (named).
    """
    if color not in ("gray", "rgb"):
        raise ValueError(f"color={color!r}; use 'gray' or 'rgb'")
    root = Path(root)
    if (root / split / "images").is_dir():
        X, y = read_image_folder(root / split / "images", root / split / "masks")
        return [to_color(x, color) for x in X], y
    for folder in (root / f"stage1_{split}", root):
        if folder.is_dir() and any((p / "images").is_dir() for p in folder.iterdir()):
            return _read_kaggle(folder, color, progress)
    raise ValueError(
        f"{str(root)!r} holds neither {split}/images + {split}/masks nor Kaggle's "
        f"stage1_{split}/<id>/images layout"
    )


WBC_GRAY_LEVELS = {0: 0, 128: 1, 255: 2}
"""The source's gray-level WBC masks: black background, gray cytoplasm, white nucleus."""


def load_wbc(
    root: str | os.PathLike, mapping: dict[int, int] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Load white-blood-cell images (RGB) and class masks (0 background, 1 cytoplasm,
    2 nucleus) from ``root/images`` and ``root/masks``, paired by name.

    Images keep their own sizes (88 to 120 px per side in the shared data); masks are
    never resampled.

    Parameters
    ----------
    root : path
    mapping : dict, optional
        Mask value -> class index, for masks stored as gray levels: the source's masks
        need ``mapping=WBC_GRAY_LEVELS`` (0 -> 0, 128 -> 1, 255 -> 2). Without it the
        masks must already hold class indices 0, 1, 2.

    Raises
    ------
    ValueError
        Unpaired or unreadable files, a mask whose size differs from its image, or mask
        values outside the classes (or outside ``mapping``), naming the file.
    """
    root = Path(root)
    pairs = paired_files(root / "images", root / "masks")
    names = list(pairs)
    X = [read_image(image) for image, _ in pairs.values()]
    y = [read_image(mask) for _, mask in pairs.values()]
    for i, name in enumerate(names):
        image, mask = X[i], y[i]
        if image.ndim == 3 and image.shape[2] == 4:
            X[i] = image = np.ascontiguousarray(image[..., :3])
        if mask.ndim == 3:  # a gray mask saved as RGB
            mask = mask[..., 0]
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"mask {name!r} has shape {mask.shape} but its image {image.shape[:2]}"
            )
        values = np.unique(mask)
        if mapping is not None:
            unknown = sorted(set(values.tolist()) - set(mapping))
            if unknown:
                raise ValueError(
                    f"mask {name!r} has values {unknown} that mapping={mapping} does not map"
                )
            lut = np.zeros(int(values.max()) + 1, np.uint8)
            for value, cls in mapping.items():
                if value < lut.size:
                    lut[value] = cls
            mask = lut[mask]
        elif values.max() > 2:
            hint = " (gray levels: pass mapping=WBC_GRAY_LEVELS)" if 255 in values else ""
            raise ValueError(
                f"mask {name!r} has values {values.tolist()[:6]}; expected class indices "
                f"0, 1, 2{hint}"
            )
        y[i] = mask.astype(np.uint8)
    return X, y


ISBI_STACKS = ("train-volume.tif", "train-labels.tif")


def _isbi_classes(label: np.ndarray, name: str) -> np.ndarray:
    if label.ndim == 3:  # a gray label saved as RGB
        label = label[..., 0]
    values = np.unique(label).tolist()
    if not set(values) <= {0, 255} and not set(values) <= {0, 1}:
        raise ValueError(
            f"label {name} has values {values[:6]}; expected 0 (membrane) and 255 (cell)"
        )
    return (label > 0).astype(np.uint8)


def load_isbi2012(root: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Load the ISBI 2012 EM training slices and their labels.

    Reads either layout of ``root``: ``images/`` and ``labels/`` folders of one file per
    slice paired by name (the shared data: 30 PNGs of 512 x 512), or the challenge's
    multi-page ``train-volume.tif`` and ``train-labels.tif`` (tifffile, one page per
    slice).

    Returns
    -------
    X : list of (H, W) uint8
    y : list of (H, W) uint8
        **1 = cell interior, 0 = membrane** (the files' 255 and 0). Cells are the
        segments: the 4-connected components of ``y == 1``, as
        :func:`~skunet.metrics.rand_scores` and :func:`~skunet.losses.unet_weight_map`
        take them. Use ``1 - y`` for membrane = 1.

    Raises
    ------
    ValueError
        Neither layout found, unpaired or unreadable files, a label of another size than
        its slice or with values other than 0 and 255 (naming the file or page).
    """
    root = Path(root)
    volume, labels = (root / f for f in ISBI_STACKS)
    if (root / "images").is_dir():
        pairs = paired_files(root / "images", root / "labels")
        items = [
            (read_image(image), read_image(label), str(label)) for image, label in pairs.values()
        ]
    elif volume.is_file() and labels.is_file():
        stack, truth = read_image(volume), read_image(labels)
        if stack.ndim == 2:
            stack, truth = stack[None], truth[None]
        if stack.shape[0] != truth.shape[0]:
            raise ValueError(
                f"{str(volume)!r} has {stack.shape[0]} slices but {str(labels)!r} {truth.shape[0]}"
            )
        items = [(s, t, f"{str(labels)!r} page {i}") for i, (s, t) in enumerate(zip(stack, truth))]
    else:
        raise ValueError(
            f"{str(root)!r} has neither images/ + labels/ folders nor {' + '.join(ISBI_STACKS)}"
        )
    X, y = [], []
    for image, label, name in items:
        if label.shape[:2] != image.shape[:2]:
            raise ValueError(f"label {name} has shape {label.shape} but its slice {image.shape}")
        X.append(image)
        y.append(_isbi_classes(label, name))
    return X, y


def load_sample(name: str = "nuclei") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The small CC0 sample bundled with skunet (12 DSB2018 nuclei images).

    >>> X, y = load_sample("nuclei")
    >>> len(X), X[0].dtype, y[0].dtype
    (12, dtype('uint8'), dtype('uint16'))
    """
    with _sample_folder(name) as path:
        return read_image_folder(path / "images", path / "masks")


def sample_ids(name: str = "nuclei") -> list[str]:
    """The source's ids of the bundled sample's images (DSB2018's Kaggle ids), in
    :func:`load_sample`'s order: which of them a pretrained model trained on is on its
    card (``training_data["held_out"]``).

    >>> sample_ids("nuclei")[3][:8]
    '4ff152d7'
    """
    with _sample_folder(name) as path:
        return list(paired_files(path / "images", path / "masks"))


def _sample_folder(name: str):
    folder = lookup({"nuclei": "nuclei"}, name, "sample")
    return resources.as_file(resources.files("skunet") / "data" / folder)
