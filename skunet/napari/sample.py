"""Sample data: the nuclei images bundled with skunet (DSB2018, CC0)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["nuclei_sample"]


def nuclei_sample() -> list[tuple[Any, dict, str]]:
    """A fluorescence image of the bundled sample that the pretrained ``nuclei`` model
    never trained on, and its true nuclei as a hidden Labels layer."""
    from ..datasets import load_sample
    from ..demo import UNSEEN

    X, y = load_sample("nuclei")
    i = max(UNSEEN, key=lambda k: int(y[k].max()))  # the one with the most nuclei
    return [
        (X[i], {"name": "nuclei", "contrast_limits": _limits(X[i])}, "image"),
        (y[i], {"name": "nuclei (true)", "visible": False}, "labels"),
    ]


def _limits(image: np.ndarray) -> list[float]:
    """Display range of a dim fluorescence image: its 1st and 99.8th percentiles."""
    return [float(v) for v in np.percentile(image, [1, 99.8])]
