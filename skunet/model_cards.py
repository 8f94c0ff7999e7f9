"""The model card: what a pretrained model is, where it came from and how well it does
(:mod:`skunet.pretrained` registers, lists and loads the cards' models)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["ModelCard"]


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a pretrained model is, where it came from and how well it does.

    Parameters
    ----------
    name, version : str
        ``version`` is semantic (``"0.1.0"``); ``name@version`` is unique.
    task : str
        The :data:`skunet.tasks.TASKS` entry the model was trained for.
    file : str
        File name of the model (in the package, the cache or at ``url``).
    sha256 : str
        Hex digest of the file; checked before loading.
    size : int
        Bytes.
    licence : str
        Of the weights, an SPDX identifier (the BioImage Model Zoo takes no other); the
        data's terms are in ``training_data["licence"]``.
    training_data : dict
        ``source``, ``images`` (count), ``licence`` of the data; ``held_out``: the ids
        of the source's images that the model never trained on (``[]``: it trained on
        every image, so none of them can judge it), see :meth:`never_saw`.
    command : str
        What produced the file, exactly.
    figures : dict
        Held-out figures: ``images``, ``ap`` (IoU threshold -> AP),
        ``seconds_per_megapixel`` and the ``machine`` they were measured on.
    limits : tuple of str
        Where the model is known to fail.
    description : str
    url : str, optional
        Where to download the file from when it is neither shipped nor cached.
    """

    name: str
    version: str
    task: str
    file: str
    sha256: str
    size: int
    licence: str
    training_data: dict
    command: str
    figures: dict
    limits: tuple[str, ...] = ()
    description: str = ""
    url: str | None = None

    @property
    def key(self) -> str:
        """``"name@version"``."""
        return f"{self.name}@{self.version}"

    def never_saw(self, ids: Sequence[str]) -> list[int]:
        """The positions in ``ids`` (image ids of the training source) of the images the
        model never trained on: those in ``training_data["held_out"]``; none when the
        card does not say.

        >>> card = ModelCard("m", "1.0.0", "nuclei", "m.skunet", "0" * 64, 1, "CC0-1.0",
        ...                  {"held_out": ["b", "d"]}, "python train.py", {})
        >>> card.never_saw(["a", "b", "c", "d"])
        [1, 3]
        """
        held_out = set(self.training_data.get("held_out", ()))
        return [i for i, image in enumerate(ids) if image in held_out]

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-able data (the form of ``models.json``)."""
        return {**dataclasses.asdict(self), "limits": list(self.limits)}
