"""Files of the command line: image / mask pairs, inputs, masks written atomically."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

__all__ = ["input_files", "naming_files", "output_path", "read_pairs", "write_mask"]


def read_pairs(images: str, masks: str, n_channels: int):
    """Images (as ``n_channels`` channels) and masks paired by name, and the pairs' file
    names (for messages)."""
    from ..datasets import as_task_color, paired_files, read_image

    pairs = paired_files(images, masks)
    X = [as_task_color(read_image(image), n_channels) for image, _ in pairs.values()]
    y = [read_image(mask) for _, mask in pairs.values()]
    return X, y, [(str(image), str(mask)) for image, mask in pairs.values()]


@contextlib.contextmanager
def naming_files(files: list[tuple[str, str]]):
    """Errors about ``X[i]`` / ``y[i]`` name the image / mask file instead."""
    try:
        yield
    except (ValueError, TypeError) as exc:

        def name(m: re.Match) -> str:
            i = int(m.group(2))
            return repr(files[i][m.group(1) == "y"]) if i < len(files) else m.group(0)

        raise type(exc)(re.sub(r"\b([Xy])\[(\d+)\]", name, str(exc))) from exc


def input_files(inputs: list[str]) -> list[Path]:
    from ..datasets import IMAGE_EXTENSIONS

    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"no image files in folder {str(item)!r}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {str(item)!r} does not exist")
    stems = [p.stem for p in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"inputs share output names: {', '.join(twice[:5])}")
    return files


def output_path(out: Path, source: Path, mask) -> Path:
    tiff = source.suffix.lower() in (".tif", ".tiff") or mask.max() > 65535
    return out / (source.stem + (".tif" if tiff else ".png"))


def write_mask(path: Path, mask) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    from ..persistence import atomic_path

    dtype = np.uint8 if mask.max() < 256 else np.uint16 if mask.max() < 65536 else np.uint32
    with atomic_path(path) as tmp:
        if path.suffix == ".tif":
            tifffile.imwrite(tmp, mask.astype(dtype), compression="zlib")
        else:
            Image.fromarray(mask.astype(dtype)).save(tmp, format="PNG")
