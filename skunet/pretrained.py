"""Pretrained models: segment before any ``fit``, fine-tune on a few images.

Each model has a *card* (:class:`ModelCard`): its name and semantic version, task, the
sha256 and size of its file, licence, training data, the exact command that trained it,
its figures on images it never saw, and where it fails. The cards of the models that
ship inside the package live in ``skunet/data/models/models.json`` beside their files;
:func:`register_model` adds more (a lab's own models, say).

Files are skunet's safe model files (:meth:`~skunet.UNetSegmenter.save`: safetensors,
nothing unpickled). :func:`load_model` resolves a card's file **offline first**
(:mod:`skunet.model_files`):

1. inside the package: the newest version of each model (no network, ever);
2. in the cache directory, ``$SKUNET_HOME/models`` (default: the platform's user cache,
   e.g. ``~/.cache/skunet/models``), under the card's file name or under any name with
   the card's sha256: where superseded versions live once copied there, and how an
   offline cluster gets a model;
3. from the card's ``url``, with ``pooch`` (``pip install pooch``), downloaded to a
   temporary file and renamed into the cache once its sha256 matches, so parallel
   workers never see a partial file.

Every file's sha256 is checked before anything is loaded; a mismatch is a ``ValueError``.
Versions stay registered side by side: ``"nuclei"`` is the newest, ``"nuclei@0.1.0"``
that version for as long as skunet knows it.

Fine-tuning follows scikit-learn's ``warm_start``: ``load_model("nuclei",
warm_start=True, **FINE_TUNING)`` continues from the pretrained weights when ``fit`` is
given the user's images (see :data:`FINE_TUNING`).
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .augment import Augment
from .intake.annotation import labelled_only, partly_annotated
from .intake.validation import lookup
from .lazy import is_lazy
from .model_cards import ModelCard
from .model_files import SHIPPED, cache_dir, check_file, locate
from .model_files import model_path as _model_path

__all__ = [
    "FINE_TUNING",
    "ModelCard",
    "cache_dir",
    "check_file",
    "fine_tune",
    "get_card",
    "list_models",
    "load_model",
    "locate",
    "model_path",
    "open_base",
    "open_model",
    "register_model",
]

CARDS_FILE = "models.json"

# Parameters that would change what the weights mean or rebuild the network (and so
# throw the pretrained weights away): refused by ``load_model``.
_FIXED = ("module", "n_classes", "target", "normalize", "task")

FINE_TUNING: dict[str, Any] = {
    "warm_start": True,  # fit continues from the loaded weights
    # 0.3 of the training rate: on the few-shot benchmark (k=10, 45 epochs) 1e-4 gained
    # little at IoU 0.9, 1e-3 lost AP@0.5 (benchmarks/results/fewshot_trials.json)
    "lr": 3e-4,
    "max_epochs": 30,
    "train_split": None,  # a few images: train on all of them ...
    "callbacks__checkpoint": None,  # ... and keep the last epoch
    # A few images trained on for hundreds of epochs: flips alone (the nuclei recipe's)
    # let the network learn their exact gray values and shapes. With the 2015 paper's
    # elastic, affine and gray-value augmentation, DIC-HeLa cells trained on 6 early
    # frames for 3 min reach SEG 0.792 on late, crowded frames instead of 0.724, the
    # worst frame 0.747 instead of 0.525 (benchmarks/results/dic_hela_trials.json).
    "augment": Augment.unet_paper(),
}
"""The fine-tuning recipe for a pretrained model (see ``docs/pretrained.md``):
continue from the loaded weights at 0.3 of the training learning rate on all the
user's labelled images with the U-Net paper's augmentation, keep the last epoch, then
choose the instance thresholds again on labelled images the network did not train on
(``calibrate_instances``). Every value can be overridden; ``max_epochs`` or
``callbacks=[("time_limit", TimeLimit(3))]`` bound the minutes."""


UNTIL_THE_MINUTES = 100_000  # fine_tune's max_epochs when only minutes are given (as benchmarked)

_REGISTRY: dict[str, ModelCard] = {}


def _version_key(card: ModelCard) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in card.version.split("."))


def register_model(card: ModelCard) -> ModelCard:
    """Add a model to the registry (``name@version`` must be new, or the same card).

    >>> card = register_model(ModelCard(
    ...     name="my-nuclei", version="1.0.0", task="nuclei", file="my-nuclei-1.0.0.skunet",
    ...     sha256="0" * 64, size=1, licence="CC0-1.0", training_data={}, command="",
    ...     figures={}))
    >>> get_card("my-nuclei").key
    'my-nuclei@1.0.0'
    """
    if not isinstance(card, ModelCard):
        raise TypeError(f"register_model takes a ModelCard, not {type(card).__name__}")
    known = _REGISTRY.get(card.key)
    if known is not None and known != card:
        raise ValueError(f"{card.key} is already registered with another card")
    _REGISTRY[card.key] = card
    return card


def _register_shipped() -> None:
    cards = resources.files("skunet").joinpath(SHIPPED, CARDS_FILE)
    if not cards.is_file():
        return
    for entry in json.loads(cards.read_text()):
        register_model(ModelCard(**{**entry, "limits": tuple(entry.get("limits", ()))}))


def list_models(name: str | None = None) -> list[ModelCard]:
    """The registered model cards, every version, oldest first (only ``name``'s if given).

    >>> [card.key for card in list_models("nuclei")][:1]
    ['nuclei@0.1.0']
    """
    cards = [c for c in _REGISTRY.values() if name is None or c.name == name]
    return sorted(cards, key=lambda c: (c.name, _version_key(c)))


def get_card(name: str) -> ModelCard:
    """The card of ``"name"`` (its newest version) or ``"name@version"``."""
    if not isinstance(name, str):
        raise TypeError(f"a model name is a str like 'nuclei', not {type(name).__name__}")
    base, _, version = name.partition("@")
    versions = list_models(base)
    if not versions:
        lookup({c.name: c for c in list_models()}, base, "pretrained model")  # lists names
    if not version:
        return versions[-1]
    return lookup({c.version: c for c in versions}, version, f"version of {base!r}")


def model_path(name: str | ModelCard, download: bool = True) -> Path:
    """The checked file of a model (a name, ``name@version`` or a card): shipped, in the
    cache (under its file name, or any name with its sha256), or (``download``) fetched
    from its URL (:mod:`skunet.model_files`).

    Raises ``FileNotFoundError`` naming where the file may be put when it is nowhere and
    cannot be fetched, and ``ValueError`` when a file is found but its sha256 is wrong.
    """
    return _model_path(name if isinstance(name, ModelCard) else get_card(name), download)


def load_model(name: str, **params: Any):
    """A fitted :class:`~skunet.UNetSegmenter` from a pretrained model, offline first.

    Parameters
    ----------
    name : str
        A registered model (:func:`list_models`), ``"nuclei"`` or ``"nuclei@0.1.0"``.
    **params
        Settings to override: prediction settings (``device``, ``tta``, ``tile_size``,
        ``verbose`` ...) or, for fine-tuning, training ones (``warm_start``, ``lr``,
        ``max_epochs`` ..., see :data:`FINE_TUNING`). Parameters that would rebuild the
        network or change what its outputs mean (``module``, ``module__*``,
        ``n_classes``, ``target``, ``normalize``, ``task``) are refused.

    Returns
    -------
    UNetSegmenter
        Ready for ``predict``, ``predict_instances``, ``score``, ``calibrate_instances``
        and ``save``, with its calibrated instance thresholds; ``pretrained_`` holds the
        card.

    Examples
    --------
    >>> from skunet.datasets import load_sample
    >>> X, _ = load_sample("nuclei")
    >>> seg = load_model("nuclei", tta=False)
    >>> int(seg.predict_instances(X[:1])[0].max()) > 10
    True
    """
    card = get_card(name)
    fixed = sorted(k for k in params if k in _FIXED or k.startswith("module__"))
    if fixed:
        raise ValueError(
            f"load_model({name!r}) cannot change {', '.join(fixed)}: the pretrained weights "
            f"belong to the network and outputs of the card; train a new model instead"
        )
    from .estimator import UNetSegmenter

    device = params.pop("device", "cpu")
    seg = UNetSegmenter.load(model_path(card), device=device)
    if seg.task != card.task:
        raise ValueError(f"{card.file!r} holds a {seg.task!r} model; the card says {card.task!r}")
    if params:
        seg.set_params(**params)
        if any(k.startswith("callbacks") for k in params):
            # skorch leaves a callback set to None in ``callbacks_`` of an initialised
            # net, and a warm-started fit does not initialise again
            seg.initialize_callbacks()
    seg.pretrained_ = card
    return seg


_register_shipped()


def open_model(model: str | os.PathLike, device: str = "cpu"):
    """A fitted segmenter from a model file (a ``.skunet`` file, or a BioImage Model Zoo
    ``.zip`` that skunet wrote) or, where no such file exists, from a pretrained model's
    name or key: what the command line's and the napari widget's ``model`` take.

    Raises FileNotFoundError naming the registered models when it is neither.
    """
    path = Path(model)
    if path.is_file() and path.suffix == ".zip":
        from .export import from_bioimageio

        return from_bioimageio(path, device=device)
    if path.is_file():
        from .estimator import UNetSegmenter

        return UNetSegmenter.load(path, device=device)
    cards = list_models()
    if str(model) in {k for card in cards for k in (card.name, card.key)}:
        return load_model(str(model), device=device)
    raise FileNotFoundError(
        f"model file {str(model)!r} does not exist, and it is not a pretrained model "
        f"({', '.join(sorted({c.name for c in cards}))}: see skunet models)"
    )


def open_base(model: Any, device: str = "cpu") -> tuple[Any, str]:
    """The segmenter a training starts from and what to call it: a copy of a segmenter
    (the caller's is never changed), else :func:`open_model` of a model file or a
    pretrained model's name on ``device``; called by its card's key where it has one,
    else ``"a fitted segmenter"`` or the name or path given.

    What :func:`fine_tune` and :func:`skunet.adaptation.adapt_input` start from.
    """
    from .estimator import UNetSegmenter

    if isinstance(model, UNetSegmenter):
        seg, given = copy.deepcopy(model), "a fitted segmenter"
    else:
        seg, given = open_model(model, device=device), str(model)
    card = getattr(seg, "pretrained_", None)
    return seg, card.key if card is not None else given


def _partial(partial: Any, images: list, masks: list) -> list[int]:
    """The indices of ``masks`` that fine_tune's ``partial`` takes as partly annotated."""
    if isinstance(partial, str):
        if partial != "auto":
            raise ValueError(f"partial={partial!r}: use 'auto', True, False or indices")
        lazy = any(is_lazy(v) for v in [*images, *masks])
        found = [] if lazy else partly_annotated(images, masks)
        for i in found:
            warnings.warn(
                f"mask {i} labels far less of its image than the others do: taken as "
                "partly annotated (its unlabelled pixels not taught as background); "
                "pass partial=False if it is complete",
                UserWarning,
                stacklevel=3,
            )
        return found
    if isinstance(partial, (bool, np.bool_)):
        return list(range(len(masks))) if partial else []
    indices = [int(i) for i in partial]
    if bad := [i for i in indices if not 0 <= i < len(masks)]:
        raise ValueError(f"partial names masks {bad}, but y has {len(masks)} masks")
    return indices


def fine_tune(
    model: Any, X: Any, y: Any, *, minutes: float | None = None, random_state: int | None = 0,
    partial: str | bool | Sequence[int] = "auto", **params: Any,
):  # fmt: skip
    """A model fine-tuned on your labelled images: the one function behind Python,
    ``skunet fine-tune`` and the napari plugin.

    Parameters
    ----------
    model : str, path or UNetSegmenter
        A pretrained model's name (``"nuclei"``, ``"nuclei@0.3.0"``), a model file
        (``.skunet``, or a skunet-written ``.zip``), or a segmenter (not changed: a copy
        is trained). A fitted one is fine-tuned by :data:`FINE_TUNING`; an unfitted one
        (``segmenter("nuclei")``) is trained from scratch by its own recipe on all the
        images, keeping the last epoch, with the same budget and calibration.
    X, y : images and their masks, as ``fit`` takes them
        Instance labels for an instance model (the masks a model's task holds). A mask
        may mark pixels nobody annotated with -1 (:data:`skunet.tiling.IGNORE`): they
        are neither taught nor scored, so a few cells painted in a crowd are enough.
    minutes : float, optional
        Wall-clock budget of the training (:class:`~skunet.callbacks.TimeLimit`). It
        alone bounds the training unless ``max_epochs`` is given too (the benchmarks'
        figures are for minutes that bind); None: ``max_epochs`` bounds it.
    random_state : int or None, default=0
        Seeds the training and which image is held out.
    partial : "auto", bool or list of int, default="auto"
        Masks that label only some of their cells (instance models): their unlabelled
        pixels become -1, so the cells left out are not taught as background.
        ``"auto"``: those :func:`skunet.intake.annotation.partly_annotated` finds among
        three or more masks (a mask labelling far less of its image than the others,
        where a pixel classifier taught by them finds more unlabelled cells than
        labelled ones), with a warning naming each; ``True``: every mask; ``False``: none; a
        list: those indices.
    **params
        :data:`FINE_TUNING` overrides (``lr``, ``max_epochs``, ``device`` ...).

    Returns
    -------
    UNetSegmenter
        Fitted from the base model's weights by :data:`FINE_TUNING`. With three or more
        images and an instance model, one image (drawn with ``random_state``) is held
        out of the training and the instance threshold and split are calibrated on it
        (``calibrate_instances``). ``fine_tuned_`` records the base model, the images
        trained on and held out, the masks taken as partial, the budget, the epochs and
        the seconds; the model saves and exports like any other, ``fine_tuned_`` included.

    Raises
    ------
    ValueError, TypeError
        Bad images or masks, named, before any training (as ``fit``).
    """
    from .callbacks import TimeLimit
    from .estimator import UNetSegmenter
    from .targets import decoding
    from .tasks import task_of

    settings = {**FINE_TUNING, "random_state": random_state, **params}
    given = isinstance(model, UNetSegmenter)  # its device setting stays in the settings
    seg, base = open_base(model, device="cpu" if given else settings.pop("device", "cpu"))
    if given:
        if adapted := getattr(model, "adapted_", None):  # skunet.adaptation.adapt_input
            to = adapted["channels"] or f"{len(adapted['weights'])} channels"
            base = f"{adapted['base']}, adapted to {to}"
        if not hasattr(model, "classes_"):  # unfitted: trained from scratch
            base = f"new {model.task or 'generic'} segmenter"
            recipe = ("warm_start", "lr", "max_epochs")  # the segmenter's own
            settings = {k: v for k, v in settings.items() if k not in recipe or k in params}
    if minutes is not None:
        if "max_epochs" not in params:  # the minutes bind, not a recipe's epoch count
            settings["max_epochs"] = UNTIL_THE_MINUTES
        given = settings.get("callbacks", seg.callbacks) or []
        kept = [(n, cb) for n, cb in given if n != "time_limit"]
        settings["callbacks"] = [*kept, ("time_limit", TimeLimit(minutes, sink=None))]
    seg.set_params(**settings)  # replaced callbacks are built again before the fit
    images, masks = ([v] if is_lazy(v) else list(v) for v in (X, y))  # one lazy image
    if len(images) != len(masks):
        raise ValueError(f"X has {len(images)} images but y has {len(masks)} masks")
    held: list[int] = []
    membranes = seg.n_classes == 2 and task_of(seg).membranes
    instances = decoding(seg.target, membranes).instance_labels
    partly = _partial(partial, images, masks) if instances else []
    masks = [labelled_only(m) if i in partly else m for i, m in enumerate(masks)]
    if len(images) >= 3 and instances:
        held = [int(np.random.default_rng(random_state).integers(len(images)))]
    train = [i for i in range(len(images)) if i not in held]
    epochs, start = len(seg.history or []), time.perf_counter()
    seg.fit([images[i] for i in train], [masks[i] for i in train])
    seconds = time.perf_counter() - start
    if held:
        seg.calibrate_instances([images[i] for i in held], [masks[i] for i in held])
    seg.fine_tuned_ = {
        "base": base,
        "images": len(train),
        "held_out": len(held),
        "partial": partly,
        "minutes": minutes,
        "epochs": len(seg.history) - epochs,
        "seconds": round(seconds, 1),
    }
    return seg
