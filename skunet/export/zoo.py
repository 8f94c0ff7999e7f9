"""BioImage Model Zoo packages (format 0.5) of a fitted segmenter, and back.

:func:`to_bioimageio` writes the zip that napari, Fiji (deepImageJ), ilastik, QuPath and
``bioimageio.core`` run: the network as one ``image -> probabilities`` graph
(:class:`~skunet.export.graph.ProbabilityNetwork`) in up to three weight formats
(``pytorch_state_dict``, the parent, built by :func:`network` from skunet's own classes,
and ``torchscript`` / ``onnx`` converted from it), the model's normalisation as the
package's preprocessing, test tensors from a real image, a cover, the model card as its
documentation, and skunet's instance decoder with its calibrated settings under
``config.skunet``, so that a consumer can rebuild the instances. Every weight format is
run through ``bioimageio.core``'s ``test_model`` before the zip is written.

:func:`from_bioimageio` loads a package that skunet wrote back into a fitted
:class:`~skunet.UNetSegmenter`, with the same parameters, weights and calibration.

Needs the ``export`` extra: ``bioimageio.core`` 0.11.0 with ``bioimageio.spec``
0.5.12.0, and ``pydantic<2.12`` (with pydantic 2.12 and later the spec's file
serializer fails while building a model description).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..intake.validation import as_float32, lookup
from ..persistence import (
    atomic_path,
    estimator_class,
    refuse_existing,
    segmenter_from_metadata,
    segmenter_metadata,
)
from ..preprocessing import normalize_images
from ..version import __version__
from . import parts
from .graph import (
    ONNX_OPSET,
    ProbabilityNetwork,
    cpu_graph,
    export_onnx,
    export_torchscript,
)

__all__ = ["WEIGHT_FORMATS", "from_bioimageio", "network", "to_bioimageio"]

WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
"""The weight formats :func:`to_bioimageio` writes; the first is the others' parent."""

_UNET_CITATION = {
    "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def _spec() -> Any:
    try:
        import bioimageio.spec.model.v0_5 as spec
    except ImportError:
        raise ImportError(
            'BioImage Model Zoo packages need the export extra: pip install "skunet[export]"'
        ) from None
    return spec


def network(metadata: dict[str, str], trust: list[str] | None = None) -> ProbabilityNetwork:
    """The package's ``pytorch_state_dict`` architecture: the untrained
    :class:`~skunet.export.graph.ProbabilityNetwork` of the segmenter that
    ``metadata`` (a model file's metadata) describes; the consumer loads the weights."""
    trust = tuple(trust or ())
    cls, source = estimator_class(metadata, trust), "a BioImage Model Zoo package"
    seg = segmenter_from_metadata(cls, metadata, None, source, "cpu", trust)
    return ProbabilityNetwork.of(seg.predictor_)


def _metadata(seg: Any, epochs: bool) -> dict[str, str]:
    """:func:`segmenter_metadata` with the history's epoch rows only (``epochs``; the
    per-batch losses make most of a history's size) or none at all."""
    metadata = segmenter_metadata(seg)
    fitted = json.loads(metadata["fitted"])
    history = [{k: v for k, v in row.items() if k != "batches"} for row in fitted["history"]]
    fitted["history"] = history if epochs else []
    return {**metadata, "fitted": json.dumps(fitted)}


def to_bioimageio(
    seg: Any,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str | dict] | None = None,
    licence: str | None = None,
    version: str = "0.1.0",
    tags: list[str] | None = None,
    cite: list[dict] | None = None,
    test_image: Any = None,
    input_dtype: str = "float32",
    weight_formats: tuple[str, ...] = WEIGHT_FORMATS,
    test: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a BioImage Model Zoo package (format 0.5, a zip) of a fitted segmenter.

    Parameters
    ----------
    seg : UNetSegmenter
        A fitted segmenter (a pretrained one's card fills the defaults below).
    path : str or path-like
        The ``.zip`` to write; an existing file is refused unless ``overwrite``.
    name, description : str, optional
        The model's name and one-paragraph description.
    authors : list of str or dict, optional
        Who trained the model (names, or dicts of the spec's ``Author`` fields such as
        ``affiliation``, ``orcid``, ``github_user``). Required unless ``seg`` is a
        pretrained skunet model.
    licence : str, optional
        An SPDX identifier; default the pretrained card's, else ``"CC-BY-4.0"``.
    version : str, default="0.1.0"
        The package's version; a pretrained model's own.
    tags, cite : list, optional
        Added to skunet's tags (``"skunet"``, ``"unet"``, ``"pytorch"``, the task, the
        axes) and citations (U-Net, skunet); ``cite`` entries are dicts with ``text`` and
        ``doi`` or ``url``.
    test_image : array-like, optional
        A real image for the test tensors and the cover, as ``predict`` takes it (default:
        the bundled nuclei sample's first image, repeated over the channels).
    input_dtype : {"float32", "uint8", "uint16"}, default="float32"
        For models without ``normalize``: the dtype consumers hand in. ``"uint8"`` /
        ``"uint16"`` add the division by the dtype's maximum that skunet applies to such
        images; ``"float32"`` expects values already in [0, 1]. Models with
        ``normalize="percentile"`` take any dtype (the package scales each image).
    weight_formats : tuple of str, default=WEIGHT_FORMATS
        ``"pytorch_state_dict"`` (always; the parent), ``"torchscript"``, ``"onnx"``.
    test : bool, default=True
        Run ``bioimageio.core.test_model`` on every weight format first; a failure raises
        ``ValueError`` with its summary and writes nothing.
    overwrite : bool, default=False

    Returns
    -------
    Path
        ``path``.
    """
    spec = _spec()
    from bioimageio.spec import save_bioimageio_package

    path = Path(path)
    p = seg.predictor_  # NotFittedError before fit
    card = getattr(seg, "pretrained_", None)
    formats = tuple(dict.fromkeys(("pytorch_state_dict", *weight_formats)))
    for f in formats:
        lookup(dict.fromkeys(WEIGHT_FORMATS), f, "weight format")
    lookup(parts.INPUT_DTYPES, input_dtype, "input_dtype")
    if path.suffix != ".zip":
        raise ValueError(f"path={str(path)!r}: a BioImage Model Zoo package is a .zip file")
    refuse_existing(path, overwrite)
    if authors is None and card is None:
        raise ValueError(
            "authors=[...] is required (--author on the command line): who trained the model"
        )
    with cpu_graph(seg) as graph:
        # the smallest side both the graph and the spec (more than twice the halo) take
        first = -(-max(graph.min_side, 2 * graph.context + 1) // graph.step) * graph.step
        image = parts.test_image(seg, test_image, first, graph.step)
        raw = parts.raw_input(image, seg.normalize, input_dtype)
        x = normalize_images([as_float32(image)], seg.normalize)[0]
        with torch.no_grad():
            output = graph(torch.from_numpy(np.ascontiguousarray(x[None]))).numpy()
        state = {k: v.detach().clone() for k, v in graph.state_dict().items()}
    metadata = _metadata(seg, epochs=True)
    trust = sorted({metadata["module"].split(".")[0]} - {"skunet", "torch"})
    instances = p.instance_settings() if p.gives_instances else None
    pytorch_version = spec.Version(torch.__version__.split("+")[0])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "test_input.npy", raw)
        np.save(tmp / "test_output.npy", output)
        parts.cover(seg, image, tmp / "cover.png")
        description = description or (card.description if card else "A skunet U-Net.")
        (tmp / "README.md").write_text(parts.documentation(seg, instances, description))
        torch.save(state, tmp / "weights.pt")
        weights = {
            "pytorch_state_dict": spec.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=spec.ArchitectureFromLibraryDescr(
                    callable="network",
                    import_from="skunet.export.zoo",
                    kwargs={"metadata": _metadata(seg, epochs=False), "trust": trust},
                ),
                pytorch_version=pytorch_version,
            )
        }
        if "torchscript" in formats:
            export_torchscript(seg, tmp / "weights.torchscript.pt")
            weights["torchscript"] = spec.TorchscriptWeightsDescr(
                source=tmp / "weights.torchscript.pt",
                pytorch_version=pytorch_version,
                parent="pytorch_state_dict",
            )
        if "onnx" in formats:
            export_onnx(seg, tmp / "weights.onnx")
            weights["onnx"] = spec.OnnxWeightsDescr(
                source=tmp / "weights.onnx",
                opset_version=ONNX_OPSET,
                parent="pytorch_state_dict",
            )
        descr = spec.ModelDescr(
            name=name or (f"skunet {card.name}" if card else "skunet model"),
            description=description,
            authors=parts.authors(spec, authors or [{"name": "skunet developers"}]),
            cite=[spec.CiteEntry(**c) for c in [_UNET_CITATION, *(cite or [])]],
            license=spec.LicenseId(licence or (card.licence if card else "CC-BY-4.0")),
            version=spec.Version(card.version if card and version == "0.1.0" else version),
            documentation=spec.FileDescr(source=tmp / "README.md"),
            covers=[spec.FileDescr(source=tmp / "cover.png")],
            tags=sorted(
                {
                    "skunet",
                    "unet",
                    "pytorch",
                    "2d",
                    "segmentation",
                    *([seg.task] if seg.task else []),
                }
                | set(tags or [])
            ),
            inputs=[parts.input_tensor(spec, tmp, raw, first, graph.step, seg, input_dtype)],
            outputs=[parts.output_tensor(spec, tmp, output, graph.context)],
            weights=spec.WeightsDescr(**weights),
            config={"skunet": {"version": __version__, "instances": instances, "model": metadata}},
        )
        if test:
            _test(descr, formats)
        # the writer reads the package back, and takes it for a zip by its suffix
        with atomic_path(path, keep_suffix=True) as partial:
            save_bioimageio_package(descr, output_path=Path(partial))
    return path


def _test(descr: Any, formats: tuple[str, ...]) -> None:
    """``bioimageio.core.test_model`` for each weight format; ValueError on a failure."""
    from bioimageio.core import test_model

    for f in formats:
        summary = test_model(descr, weight_format=f)
        if summary.status != "passed":
            raise ValueError(
                f"the package failed bioimageio.core's test_model for {f} weights:\n"
                + summary.format()
            )


def from_bioimageio(path: str | os.PathLike, device: str = "cpu", trust: tuple[str, ...] = ()):
    """A fitted :class:`~skunet.UNetSegmenter` from a BioImage Model Zoo package that
    :func:`to_bioimageio` wrote: the same parameters, calibration and weights, so that
    its ``predict_proba`` equals the exported model's.

    ``trust`` names packages beyond skunet, torch and skorch whose classes the package
    may import (as :meth:`~skunet.UNetSegmenter.load` takes it). Packages that skunet did
    not write are refused with a ValueError (run them with ``bioimageio.core``).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a BioImage Model Zoo package (a .zip file)")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        rdf = next((n for n in names if n in ("rdf.yaml", "bioimageio.yaml")), None)
        if rdf is None:
            raise ValueError(f"{str(path)!r} holds no rdf.yaml / bioimageio.yaml")
        _spec()  # the export extra, or a clear ImportError
        from bioimageio.spec.utils import read_yaml  # its YAML reader (no PyYAML needed)

        description = read_yaml(z.read(rdf).decode("utf-8"))
        skunet = (description.get("config") or {}).get("skunet")
        if not skunet or "model" not in skunet:
            raise ValueError(
                f"{str(path)!r} was not written by skunet (no config.skunet); run it with "
                "bioimageio.core"
            )
        source = description["weights"]["pytorch_state_dict"]["source"]
        state = torch.load(BytesIO(z.read(source)), map_location="cpu", weights_only=True)
    tensors = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
    metadata = skunet["model"]
    return segmenter_from_metadata(
        estimator_class(metadata, tuple(trust)), metadata, tensors, repr(str(path)), device,
        tuple(trust),
    )  # fmt: skip
