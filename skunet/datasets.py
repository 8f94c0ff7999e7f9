"""Readers for image folders, the DSB2018 layout and the bundled nuclei sample."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "load_dsb2018", "load_sample", "read_image", "read_image_folder"]

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
    X = [read_image(images[n]) for n in images]
    y = [read_image(masks[n]) for n in images]
    return X, y


def load_dsb2018(
    root: str | os.PathLike, split: str = "train"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Load the DSB2018 nuclei layout ``root/<split>/{images,masks}/<id>.tif``.

    Images are uint8 grayscale, masks uint16 instance labels (0 = background).
    """
    base = Path(root) / split
    return read_image_folder(base / "images", base / "masks")


def load_sample(name: str = "nuclei") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The small CC0 sample bundled with skunet (12 DSB2018 nuclei images).

    >>> X, y = load_sample("nuclei")
    >>> len(X), X[0].dtype, y[0].dtype
    (12, dtype('uint8'), dtype('uint16'))
    """
    samples = {"nuclei": "nuclei"}
    if name not in samples:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(samples)}")
    base = resources.files("skunet") / "data" / samples[name]
    with resources.as_file(base) as path:
        return read_image_folder(path / "images", path / "masks")
