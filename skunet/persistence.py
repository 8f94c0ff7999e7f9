"""Model files that load without unpickling: parameters as JSON, weights as safetensors.

A ``.skunet`` file is a safetensors file. Its tensors are the module's ``state_dict``; its
metadata holds the estimator's parameters, fitted attributes and training history as JSON.
Classes (``module``, ``optimizer`` ...) are stored by import path and imported on load
only from an allow-list of packages (plus those the caller names in ``trust``), so a file
cannot make ``load`` run arbitrary code.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from skorch import NeuralNet
from skorch.dataset import ValidSplit
from skorch.history import History

from .intake.validation import lookup
from .version import __version__

__all__ = [
    "FITTED_RECORDS",
    "FORMAT_VERSION",
    "atomic_path",
    "estimator_class",
    "load_segmenter",
    "refuse_existing",
    "save_segmenter",
    "segmenter_from_metadata",
    "segmenter_metadata",
]

FORMAT_VERSION = 1
ALLOWED_PREFIXES = ("skunet.", "torch.nn.", "torch.optim.", "torch.utils.data.", "skorch.")
_SCALARS = (str, int, float, bool, type(None))


def _encode(value: Any) -> tuple[bool, Any]:
    """(ok, JSON-able form) of a parameter value."""
    if isinstance(value, _SCALARS):
        return True, value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return True, list(value)
    if inspect.ismethod(value):  # bound to an object that is not stored
        return False, None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. an Augment
        fields = dataclasses.asdict(value)
        if all(_encode(v)[0] for v in fields.values()):
            path = f"{type(value).__module__}.{type(value).__qualname__}"
            return True, {"__dataclass__": path, "fields": fields}
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        path = f"{value.__module__}.{value.__qualname__}"
        if "<" not in path:  # importable by name; whether load imports it is load's call
            return True, {"__import__": path}
    if type(value) is ValidSplit:
        return True, {"__validsplit__": [value.cv, value.stratified, value.random_state]}
    return False, None


def _import(path: str, trust: tuple[str, ...] = ()) -> Any:
    trusted = ALLOWED_PREFIXES + tuple(t.rstrip(".") + "." for t in trust)
    if not path.startswith(trusted):
        package = path.split(".")[0]
        raise ValueError(
            f"refusing to import {path!r} from a model file; only {trusted} are allowed. "
            f"If you trust the file, load it with trust=({package!r},)"
        )
    module_name, _, name = path.rpartition(".")
    obj: Any = importlib.import_module(module_name)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _decode(value: Any, trust: tuple[str, ...] = ()) -> Any:
    if isinstance(value, dict) and "__import__" in value:
        return _import(value["__import__"], trust)
    if isinstance(value, dict) and "__dataclass__" in value:
        return _import(value["__dataclass__"], trust)(**value["fields"])
    if isinstance(value, dict) and "__validsplit__" in value:
        cv, stratified, random_state = value["__validsplit__"]
        return ValidSplit(cv, stratified=stratified, random_state=random_state)
    return value


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed onto ``path`` on success.

    Readers see the old file or the new one, never a partial one, and a failed write
    leaves neither the temporary file nor a changed ``path``. The temporary name ends in
    ``.tmp-<pid>`` (so that a leftover of a killed process is no image or model file to
    folder readers), or in ``path``'s own suffix with ``keep_suffix``, for writers that
    choose the format by it. A missing folder is a ``FileNotFoundError`` that names it.
    The file gets the mode the umask allows, whatever mode its writer created it with.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {str(path.parent)!r} to write {path.name!r} in")
    if keep_suffix:
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    else:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield str(tmp)
        # the umask's mode, whatever the writer chose: safetensors writes owner-only
        # (0600) files, which a colleague could not load
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_existing(path: Path, overwrite: bool, option: str = "overwrite=True") -> None:
    """FileExistsError naming ``path`` and the ``option`` that would replace it, unless
    ``overwrite`` or there is nothing to replace: nothing a user saved is lost silently."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass {option} to replace it")


WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


FITTED_RECORDS = ("instance_params_", "fine_tuned_", "adapted_")
"""Fitted attributes a model file keeps when the segmenter has them (JSON-able dicts):
the thresholds ``calibrate_instances`` chose, what
:func:`~skunet.pretrained.fine_tune` started from, which one-channel model
:func:`~skunet.adaptation.adapt_input` adapted to more channels."""


def segmenter_metadata(net) -> dict[str, str]:
    """A fitted segmenter's parameters, fitted attributes and history as the JSON strings
    a model file's metadata holds (classes by import path; parameters that cannot be
    stored are listed under ``dropped_params``)."""
    params, dropped = {}, []
    for key, value in net.get_params(deep=False).items():
        if key.startswith("_"):  # private state that skorch lists among parameters
            continue
        ok, encoded = _encode(value)
        if ok:
            params[key] = encoded
        else:
            dropped.append(key)
    fitted = {
        "n_channels_in_": int(net.n_channels_in_),
        "classes_": np.asarray(net.classes_).tolist(),
        "history": list(net.history),
    }
    for name in FITTED_RECORDS:
        if hasattr(net, name):
            fitted[name] = getattr(net, name)
    metadata = {
        "format": "skunet",
        "format_version": str(FORMAT_VERSION),
        "skunet_version": __version__,
        "estimator": f"{type(net).__module__}.{type(net).__qualname__}",
        "module": f"{type(net.module_).__module__}.{type(net.module_).__qualname__}",
        "params": json.dumps(params),
        "fitted": json.dumps(fitted),
        "dropped_params": json.dumps(dropped),
    }
    return metadata


def save_segmenter(
    net, path: str | os.PathLike, overwrite: bool = False, weights: str = "float32"
) -> Path:
    """Write a fitted segmenter to ``path`` atomically (see the module docstring).

    ``weights`` is the storage precision of the floating-point tensors ("float32",
    "float16" or "bfloat16"); they load back into the network's own precision.
    """
    path = Path(path)
    dtype = lookup(WEIGHT_DTYPES, weights, "weights precision")
    refuse_existing(path, overwrite)
    metadata = segmenter_metadata(net)
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in net.module_.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def _umask() -> int:
    """The process's file-creation mask (what ``open`` applies to new files).

    Read from ``/proc/self/status`` where the kernel shows it (Linux 4.7 on): setting
    the mask to read it back would change it for a moment for every thread (a napari
    worker writing a file then) too.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def load_segmenter(cls, path: str | os.PathLike, device: str = "cpu", trust: tuple[str, ...] = ()):
    """Read a file written by :func:`save_segmenter`; never unpickles anything.

    ``trust`` names packages beyond skunet, torch and skorch whose classes the file may
    import (a ``module`` from segmentation_models_pytorch, say).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise ValueError(
            f"{str(path)!r} is not a skunet model file (a safetensors file written by "
            f"UNetSegmenter.save): {exc}"
        ) from None
    return segmenter_from_metadata(cls, metadata, tensors, repr(str(path)), device, trust)


def estimator_class(metadata: dict[str, str], trust: tuple[str, ...] = ()) -> type:
    """The estimator class that wrote ``metadata`` (:func:`segmenter_metadata`), imported
    as a model file's other classes are (skunet's, torch's and skorch's, or ``trust``'s):
    a package exported from a subclass comes back as that subclass.

    >>> estimator_class({"estimator": "skunet.estimator.UNetSegmenter"}).__name__
    'UNetSegmenter'
    """
    return _import(metadata.get("estimator", "skunet.estimator.UNetSegmenter"), trust)


def segmenter_from_metadata(
    cls,
    metadata: dict[str, str],
    tensors: dict[str, torch.Tensor] | None,
    source: str,
    device: str = "cpu",
    trust: tuple[str, ...] = (),
):
    """A fitted ``cls`` from :func:`segmenter_metadata`'s strings and the module's
    ``tensors`` (a randomly initialised network when None); ``source`` names where they
    came from in errors."""
    if metadata.get("format") != "skunet":
        raise ValueError(f"{source} is not a skunet model (it has no skunet metadata)")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{source} uses skunet model format {metadata.get('format_version')}, "
            f"written by skunet {metadata.get('skunet_version')}; this skunet ({__version__}) "
            f"reads format {FORMAT_VERSION}"
        )
    written_by = metadata.get("skunet_version", "0")
    if _version_tuple(written_by) > _version_tuple(__version__):
        raise ValueError(
            f"{source} was written by skunet {written_by}, newer than this skunet "
            f"({__version__}); upgrade skunet to load it"
        )
    params = {k: _decode(v, tuple(trust)) for k, v in json.loads(metadata["params"]).items()}
    params["device"] = device
    # a file written by a subclass (e.g. AcceleratedUNetSegmenter) loads into ``cls``
    # without the subclass's own parameters
    accepted = set(inspect.signature(cls.__init__).parameters)
    accepted |= set(inspect.signature(NeuralNet.__init__).parameters)
    params = {k: v for k, v in params.items() if "__" in k or k in accepted}
    fitted = json.loads(metadata["fitted"])
    net = cls(**params)
    net.n_channels_in_ = fitted["n_channels_in_"]
    net.classes_ = np.asarray(fitted["classes_"])
    net.initialize()
    expected = net.module_.state_dict()
    if tensors is None:
        tensors = expected
    problems = sorted(set(expected) ^ set(tensors))
    problems += [k for k in expected if k in tensors and expected[k].shape != tensors[k].shape]
    if problems:
        k = problems[0]
        detail = (
            f"{k}: file {tuple(tensors[k].shape)}, model {tuple(expected[k].shape)}"
            if k in expected and k in tensors
            else f"{k} only in the {'model' if k in expected else 'file'}"
        )
        raise ValueError(
            f"{source} holds weights for a different architecture than its parameters "
            f"build ({metadata.get('module')}); {len(problems)} mismatched tensor(s), e.g. {detail}"
        )
    net.module_.load_state_dict({k: t.to(device) for k, t in tensors.items()})
    net.history = History(fitted["history"])
    for name in FITTED_RECORDS:
        if name in fitted:
            setattr(net, name, fitted[name])
    return net
