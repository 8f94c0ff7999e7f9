"""Where a pretrained model's file is, offline first, and whether its bytes are the card's.

A card's file is looked for (:func:`model_path`):

1. inside the package, beside ``models.json`` (the newest version of each model);
2. in the cache directory (:func:`cache_dir`) under the card's file name, or under any
   other name with the card's size and sha256: superseded versions, and models a user
   copied there by hand, are found by their bytes;
3. at the card's ``url``, downloaded with ``pooch`` into the cache.

Every file is checked against the card's size and sha256 before anything reads it.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from .model_cards import ModelCard

__all__ = ["SHIPPED", "cache_dir", "check_file", "locate", "model_path"]

SHIPPED = "data/models"  # inside the package, beside models.json


def cache_dir() -> Path:
    """Where downloaded or hand-copied model files are looked for: ``$SKUNET_HOME/models``,
    else the platform's user cache directory for skunet."""
    home = os.environ.get("SKUNET_HOME")
    if not home:
        import platformdirs

        home = platformdirs.user_cache_dir("skunet")
    return Path(home) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: str | os.PathLike, card: ModelCard) -> Path:
    """``path``, once its size and sha256 match ``card``; a ``ValueError`` otherwise."""
    path = Path(path)
    size = path.stat().st_size
    digest = _sha256(path)
    if size != card.size or digest != card.sha256:
        raise ValueError(
            f"{str(path)!r} is not the {card.key} model: sha256 {digest} "
            f"({size} bytes), the card says {card.sha256} ({card.size} bytes). The file is "
            "damaged or another model; nothing was loaded. Delete it (a cached file is "
            "fetched again) or register its own card."
        )
    return path


def locate(card: ModelCard) -> tuple[str, Path] | None:
    """Where ``card``'s file is without downloading it: ``("shipped", path)``,
    ``("cached", path)``, or None. Files are not checked here, except that a cached file
    under another name counts only when its size and sha256 are the card's."""
    shipped = resources.files("skunet").joinpath(SHIPPED, card.file)
    if shipped.is_file():
        return "shipped", Path(str(shipped))
    folder = cache_dir()
    if (folder / card.file).is_file():
        return "cached", folder / card.file
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.stat().st_size == card.size and _sha256(path) == card.sha256:
                return "cached", path
    return None


def _download(card: ModelCard, folder: Path) -> Path:
    try:
        import pooch
    except ImportError:
        raise ImportError(
            f"downloading {card.key} needs pooch (pip install pooch); or copy "
            f"{card.file} into {folder} by hand"
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    # pooch writes a temporary file in ``folder``, checks the hash, then renames it
    fetched = pooch.retrieve(
        card.url, known_hash=f"sha256:{card.sha256}", fname=card.file, path=folder
    )
    return Path(fetched)


def model_path(card: ModelCard, download: bool = True) -> Path:
    """The checked file of ``card``: shipped, cached, or (``download``) fetched from its URL.

    Raises ``FileNotFoundError`` naming where the file may be put when it is nowhere and
    cannot be fetched, and ``ValueError`` when a file is found but its sha256 is wrong.
    """
    found = locate(card)
    if found is not None:
        path = found[1]
        if path.name != card.file:  # found by its size and sha256: checked already
            return path
        return check_file(path, card)
    folder = cache_dir()
    if download and card.url:
        return check_file(_download(card, folder), card)
    raise FileNotFoundError(
        f"the {card.key} model file {card.file!r} is not shipped with skunet, not in the cache "
        f"({folder}, under any name; set SKUNET_HOME to move it)"
        + (" and download=False" if card.url else " and the card has no URL")
    )
