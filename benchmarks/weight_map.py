"""Speed of ``unet_weight_map`` on a 512 x 512 label image with about 300 cells.

    python benchmarks/weight_map.py

Times the weight map (w0=10, sigma=5) on synthetic cells packed like EM profiles (300
touching Voronoi cells separated by 1-2 px gaps) and on the ISBI 2012 slices' own
labels when the shared data is present, against the direct method: one full-image
distance transform per cell (cells x pixels). Median of 7 runs each, one thread.
Writes ``benchmarks/results/weight_map.json``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from _record import write
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from skunet.instances import cell_instances
from skunet.losses import class_balance_weights, unet_weight_map

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012"


def voronoi_cells(n: int = 300, size: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), int)
    points = rng.integers(0, size, (n, 2))
    seeds[points[:, 0], points[:, 1]] = np.arange(1, n + 1)
    _, (r, c) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[r, c]
    cells[find_boundaries(cells, mode="inner")] = 0  # 1-2 px gaps between cells
    return cells


def direct(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The textbook method: a distance transform of the whole image for every cell."""
    dist = np.sort(
        np.stack([ndi.distance_transform_edt(labels != k) for k in range(1, labels.max() + 1)]),
        axis=0,
    )
    border = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2)) * (labels == 0)
    return class_balance_weights((labels > 0).astype(int)) + border


def median_seconds(fn, *args, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    cases = {"synthetic 512x512": voronoi_cells()}
    if ISBI.is_dir():
        from skunet.datasets import load_isbi2012

        cases["ISBI 2012 slice 0"] = cell_instances(load_isbi2012(ISBI)[1][0])
    figures = {}
    for name, labels in cases.items():
        ours = median_seconds(unet_weight_map, labels)
        textbook = median_seconds(direct, labels, runs=1)
        agree = float(np.abs(unet_weight_map(labels) - direct(labels)).max())
        figures[name] = {
            "shape": list(labels.shape),
            "cells": int(labels.max()),
            "seconds": round(ours, 4),
            "direct_seconds": round(textbook, 3),
            "max_abs_difference_to_direct": agree,
        }
        print(
            f"{name}: {labels.max()} cells, {ours * 1000:.0f} ms "
            f"(direct method {textbook:.2f} s, max difference {agree:.1e})"
        )
    print("written:", write("weight_map", figures))


if __name__ == "__main__":
    main()
