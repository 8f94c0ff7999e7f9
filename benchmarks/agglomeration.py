"""Speed of the EM membrane decoder's merging: ``skunet.agglomeration.agglomerate``
against scikit-image's ``merge_hierarchical`` (skunet's decoder until 2026-12-02).

    python benchmarks/agglomeration.py
    python benchmarks/agglomeration.py --model /tmp/runs/em/em_cpu_fold3.skunet --fold 3

Both merge the same basins (:func:`skunet.instances.membrane_basins`) by the same rule;
this times them and checks that they give the same partition. The maps: 512 x 512
uniform noise smoothed by a Gaussian of 0.5, 1 and 2 px and scaled to 0-1, thresholded
at 0.3, 0.5 and 0.7 (thousands of basins and one cell growing over them: what a network
that has barely learned gives; ``merge_hierarchical`` recomputes every border of the
growing cell after each merge), and with ``--model`` the cell probabilities of a trained
EM network on its fold's six test slices (a few hundred basins). ``merge_hierarchical``
runs on the first ``--reference-maps`` noise maps (default 3: those smoothed by 0.5 px,
up to 22 000 basins, a few minutes on 2 CPU cores) and on every trained map. Split
0.85, contrast borders (the decoder's defaults). Writes ``benchmarks/results/agglomeration.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _record import write
from scipy import ndimage as ndi
from skimage.graph import RAG, merge_hierarchical

from skunet.agglomeration import _borders, _median, agglomerate
from skunet.instances import membrane_basins

SPLIT = 0.85


def reference(basins, membrane, split: float, contrast: bool = True) -> np.ndarray:
    """The same greedy merging done by scikit-image's ``merge_hierarchical`` on its
    region adjacency graph, every border of a merged cell recomputed (skunet's decoder
    until 2026-12-02)."""
    n = int(basins.max()) + 1
    graph = RAG()
    graph.add_nodes_from(int(v) for v in np.unique(basins))
    hist = np.bincount(
        (basins * 100 + np.minimum((membrane * 100).astype(int), 99)).ravel(), minlength=n * 100
    ).reshape(n, 100)
    for node in graph.nodes:
        median = float(_median(hist[node])) if contrast else 0.0
        graph.nodes[node].update(hist=hist[node], median=median, labels=[node])

    def strength(u, v, mean):
        m = min(graph.nodes[u]["median"], graph.nodes[v]["median"], 0.99)
        return (mean - m) / (1 - m) if mean > m else 0.0

    for u, v, count, total in zip(*_borders(basins, membrane)):
        u, v, mean = int(u), int(v), total / count
        graph.add_edge(u, v, count=count, mean=mean, weight=strength(u, v, mean))

    def merged_border(graph, src, dst, n):
        parts = [e for e in (graph[src].get(n), graph[dst].get(n)) if e is not None]
        count = sum(e["count"] for e in parts)
        mean = sum(e["mean"] * e["count"] for e in parts) / count
        return {"count": count, "mean": mean, "weight": strength(dst, n, mean)}

    def merge_insides(graph, src, dst):
        if contrast:
            h = graph.nodes[dst]["hist"] + graph.nodes[src]["hist"]
            graph.nodes[dst].update(hist=h, median=float(_median(h)))

    return merge_hierarchical(basins, graph, split, False, True, merge_insides, merged_border)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the pixels the same way, whatever the numbers."""
    pairs = np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b)
    return len(np.unique(a)) == len(np.unique(b)) == len(pairs)


def noise_maps(size: int = 512) -> dict[str, tuple[np.ndarray, float]]:
    """Smoothed uniform noise scaled to 0-1, with the threshold of its seeds."""
    maps = {}
    for sigma in (0.5, 1.0, 2.0):
        p = ndi.gaussian_filter(np.random.default_rng(0).random((size, size)), sigma)
        p = (p - p.min()) / (p.max() - p.min())
        for t in (0.3, 0.5, 0.7):
            maps[f"noise smoothed {sigma:g} px, threshold {t:g}"] = (p, t)
    return maps


def trained_maps(model: Path, fold: int, data: Path) -> dict[str, tuple[np.ndarray, float]]:
    """A fold network's cell probabilities of its test slices, with its own threshold."""
    from em import DEFAULT_DATA
    from sklearn.model_selection import KFold

    from skunet import UNetSegmenter
    from skunet.datasets import load_isbi2012

    X, _ = load_isbi2012(data or DEFAULT_DATA)
    _, test = list(KFold(5).split(X))[fold]
    seg = UNetSegmenter.load(model)
    threshold = (getattr(seg, "instance_params_", None) or {}).get("threshold", 0.5)
    cells = seg.predict_proba([X[i] for i in test])
    return {f"fold {fold} slice {i}": (c[1], threshold) for i, c in zip(test, cells)}


def timed(decode, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = decode(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained EM fold network (em.py --keep)")
    parser.add_argument("--fold", type=int, default=3, help="the fold it was trained for")
    parser.add_argument("--data", type=Path, help="the ISBI 2012 folder (em.py's default)")
    parser.add_argument(
        "--reference-maps", type=int, default=3, help="noise maps merge_hierarchical runs on"
    )
    args = parser.parse_args()
    maps = noise_maps()
    if args.model:
        maps |= trained_maps(args.model, args.fold, args.data)
    rows = {}
    for i, (name, (p, threshold)) in enumerate(maps.items()):
        basins, membrane = membrane_basins(p, threshold)
        cells, seconds = timed(agglomerate, basins, membrane, SPLIT)
        row = {"basins": int(basins.max()), "cells": int(cells.max()), "agglomerate_s": seconds}
        if not name.startswith("noise") or i < args.reference_maps:
            expected, row["merge_hierarchical_s"] = timed(reference, basins, membrane, SPLIT)
            row["same_partition"] = same_partition(cells, expected)
        rows[name] = row
        print(
            f"{name}: {row['basins']} basins -> {row['cells']} cells, agglomerate "
            f"{seconds:.2f} s"
            + (
                f", merge_hierarchical {row['merge_hierarchical_s']:.2f} s, same cells: "
                f"{row['same_partition']}"
                if "same_partition" in row
                else ""
            ),
            flush=True,
        )
    both = [r for r in rows.values() if "same_partition" in r]
    figures = {
        "split": SPLIT,
        "model": str(args.model) if args.model else None,
        "maps": rows,
        "every_partition_the_same": all(r["same_partition"] for r in both),
        "agglomerate_s_max": max(r["agglomerate_s"] for r in rows.values()),
    }
    print(f"written: {write('agglomeration', figures)}")


if __name__ == "__main__":
    main()
