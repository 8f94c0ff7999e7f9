"""The parts of a BioImage Model Zoo description that :func:`~skunet.export.to_bioimageio`
assembles: the test image and input, the input and output tensors, the preprocessing
that reproduces the model's normalisation, the cover, the documentation, the authors.

``spec`` is ``bioimageio.spec.model.v0_5``, passed in so that this module imports
without the ``export`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..intake.validation import as_float32, check_images
from ..prediction.inference import symmetries
from ..version import __version__

__all__ = [
    "INPUT_DTYPES",
    "authors",
    "cover",
    "documentation",
    "input_tensor",
    "output_tensor",
    "preprocessing",
    "raw_input",
    "test_image",
]

INPUT_DTYPES = {"float32": None, "uint8": 255.0, "uint16": 65535.0}
"""What consumers of a model without ``normalize`` may hand in, and its scale."""

TEST_SIDE = 256  # the test image's largest side


def test_image(seg: Any, image: Any, first: int, step: int) -> np.ndarray:
    """``(C, H, W)`` test image in its own dtype, cropped to a side the package accepts."""
    if image is None:
        from ..datasets import load_sample

        image = load_sample("nuclei")[0][0]
        if seg.n_channels_in_ > 1:
            image = np.repeat(image[..., None], seg.n_channels_in_, axis=-1)
    (image,) = check_images(
        [image], n_channels=seg.n_channels_in_, name="test_image", as_float=False
    )
    sides = []
    for n in image.shape[1:]:
        if n < first:
            raise ValueError(
                f"test_image has a side of {n} pixels; the package needs at least {first}"
            )
        sides.append(first + (min(n, max(TEST_SIDE, first)) - first) // step * step)
    return image[:, : sides[0], : sides[1]]


def raw_input(image: np.ndarray, normalize: str | None, input_dtype: str) -> np.ndarray:
    """The test input as a consumer hands it to the package, ``(1, C, H, W)``: the image
    in its own dtype when the package scales it (percentiles, or ``input_dtype``),
    else in [0, 1] as float32."""
    if normalize is None and input_dtype != "float32" and image.dtype != np.dtype(input_dtype):
        raise ValueError(
            f"input_dtype={input_dtype!r} needs a test_image of that dtype, got {image.dtype}"
        )
    if normalize is None and input_dtype == "float32":
        return as_float32(image)[None]
    return image[None]


def preprocessing(spec: Any, normalize: str | None, input_dtype: str) -> list:
    if normalize == "percentile":
        kwargs = spec.ScaleRangeKwargs(
            axes=[spec.AxisId("y"), spec.AxisId("x")], min_percentile=1.0, max_percentile=99.8
        )
        return [spec.ScaleRangeDescr(kwargs=kwargs)]
    if INPUT_DTYPES[input_dtype] is None:
        return []
    return [
        spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32")),
        spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / INPUT_DTYPES[input_dtype])),
    ]


def cover(seg: Any, image: np.ndarray, path: Path) -> None:
    """The test image and its instances (or classes) side by side: a 2:1 picture."""
    from ..plotting import plot_instances, plot_predictions

    shown = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    p = seg.predictor_
    if p.gives_instances:
        plot_instances([shown], None, [p.predict_instances([shown])[0]], path)
    else:
        plot_predictions([shown], None, [p.predict([shown])[0]], path, n_classes=p.n_classes)


def documentation(seg: Any, instances: dict | None, description: str) -> str:
    """The package's README: the model card, what goes in and out, the instances."""
    card = getattr(seg, "pretrained_", None)
    lines = [f"# {card.key if card else 'skunet model'}", "", description, ""]
    if card is not None:
        d = card.to_dict()
        lines += [
            "## Model card",
            "",
            f"- training data: {json.dumps(d['training_data'])}",
            f"- command: `{d['command']}`",
            f"- held-out figures: {json.dumps(d['figures'])}",
            *(f"- limit: {limit}" for limit in d["limits"]),
            "",
        ]
    history = list(seg.history)
    lines += [
        "## The network",
        "",
        f"- written by skunet {__version__}; task {seg.task!r}, target {seg.target!r}, "
        f"{seg.n_classes} classes, {seg.n_channels_in_} input channel(s)",
        f"- trained {len(history)} epochs"
        + (f", last train loss {history[-1].get('train_loss'):.4g}" if history else ""),
        f"- input normalisation: {seg.normalize or 'none (values in [0, 1])'}; "
        f"views averaged in the graph: {len(symmetries(seg.tta))} (tta={seg.tta!r})",
        "- output: class probabilities (softmax; a binary model's sigmoid as background / "
        "foreground), the same height and width as the input; tile with the halo.",
        "",
    ]
    if instances is not None:
        lines += [
            "## Instances",
            "",
            f"`config.skunet.instances` holds the decoder: `skunet.instances."
            f"{instances['decoder']}` with threshold {instances['threshold']} and split "
            f"{instances['split']}, as `predict_instances` runs it. In Python, "
            "`skunet.export.from_bioimageio(path).predict_instances(images)` rebuilds them.",
            "",
        ]
    return "\n".join(lines)


def authors(spec: Any, authors: Any) -> list:
    out = []
    for a in authors:
        fields = {"name": a} if isinstance(a, str) else dict(a)
        out.append(spec.Author(**fields))
    return out


def input_tensor(spec: Any, tmp: Path, raw: np.ndarray, first: int, step: int, seg, dtype: str):
    return spec.InputTensorDescr(
        id=spec.TensorId("image"),
        description="the image, channels first"
        + ("" if seg.normalize or dtype != "float32" else ", values in [0, 1]"),
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(
                channel_names=[spec.Identifier(f"channel{i}") for i in range(raw.shape[1])]
            ),
            spec.SpaceInputAxis(
                id=spec.AxisId("y"), size=spec.ParameterizedSize(min=first, step=step)
            ),
            spec.SpaceInputAxis(
                id=spec.AxisId("x"), size=spec.ParameterizedSize(min=first, step=step)
            ),
        ],
        test_tensor=spec.FileDescr(source=tmp / "test_input.npy"),
        # the tensor the network gets: the spec ends the preprocessing in this dtype
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=preprocessing(spec, seg.normalize, dtype),
    )


def output_tensor(spec: Any, tmp: Path, output: np.ndarray, halo: int):
    def space(axis: str):
        size = spec.SizeReference(tensor_id=spec.TensorId("image"), axis_id=spec.AxisId(axis))
        if halo:
            return spec.SpaceOutputAxisWithHalo(id=spec.AxisId(axis), size=size, halo=halo)
        return spec.SpaceOutputAxis(id=spec.AxisId(axis), size=size)

    return spec.OutputTensorDescr(
        id=spec.TensorId("probabilities"),
        description="class probabilities (class 0: background)",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(
                channel_names=[spec.Identifier(f"class{k}") for k in range(output.shape[1])]
            ),
            space("y"),
            space("x"),
        ],
        test_tensor=spec.FileDescr(source=tmp / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
