"""Sample data: the nuclei images bundled with skunet (DSB2018, CC0)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["nuclei_sample"]

SHOWN = "b560dba92fbf2af785739efced50d5866c86dc4dada9be3832138bef4c3524d2"


def nuclei_sample() -> list[tuple[Any, dict, str]]:
    """A fluorescence image of the bundled sample (23 nuclei, one of the nuclei
    benchmark's held-out images, which ``nuclei@0.1.0`` never trained on; the shipped
    ``nuclei`` trained on every DSB2018 image, this one included) and its true nuclei as
    a hidden Labels layer."""
    from ..datasets import load_sample, sample_ids

    X, y = load_sample("nuclei")
    i = sample_ids("nuclei").index(SHOWN)
    return [
        (X[i], {"name": "nuclei", "contrast_limits": _limits(X[i])}, "image"),
        (y[i], {"name": "nuclei (true)", "visible": False}, "labels"),
    ]


def _limits(image: np.ndarray) -> list[float]:
    """Display range of a dim fluorescence image: its 1st and 99.8th percentiles."""
    return [float(v) for v in np.percentile(image, [1, 99.8])]
