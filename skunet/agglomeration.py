"""Watershed basins merged across their weakest borders: the second half of
:func:`skunet.instances.membrane_instances`.

scikit-image's ``merge_hierarchical`` does the same greedy merging on a networkx region
adjacency graph, but after every merge it recomputes every border of the merged cell.
On a map that is mostly noise (a network that has barely learned) one cell grows over
thousands of basins, each merge then costs thousands of border updates, and decoding
one 512 x 512 slice took minutes. Here a merge moves the smaller cell's borders to the
larger one and recomputes only the borders that changed: those of the smaller cell's
neighbours, and all of the merged cell's borders only when its median (which every
border of it is measured against) moved. The cells are the same (the tests compare
them with ``merge_hierarchical``'s): the same borders merge, in the same order of
strength, and only borders of exactly equal strength may merge in another order.
"""

from __future__ import annotations

import heapq

import numpy as np
from skimage.segmentation import relabel_sequential

__all__ = ["agglomerate"]

_BINS = 100  # a cell's membrane-probability histogram, for its median


def agglomerate(
    basins: np.ndarray, membrane: np.ndarray, split: float, contrast: bool = True
) -> np.ndarray:
    """Merge neighbouring ``basins`` (labels 1, 2, ... covering the image), the weakest
    border first, while their border's strength is below ``split``.

    A border is the pairs of 4-connected neighbouring pixels of two cells; each pair
    counts the larger ``membrane`` probability of its two pixels, and the border's mean
    ``b`` over them is its strength without ``contrast``. With ``contrast`` the strength
    is ``(b - m) / (1 - m)`` (0 when ``b <= m``), ``m`` the smaller of the two cells'
    median membrane probabilities (to 0.01, at most 0.99), updated as cells merge.
    Borders of equal strength merge in the order of their cells' labels. Returns the
    merged cells as ``int32`` labels 1, 2, ...

    >>> basins = np.array([[1, 1, 2, 2, 3, 3]])
    >>> membrane = np.array([[0.0, 0.2, 0.3, 0.1, 0.9, 0.0]])
    >>> agglomerate(basins, membrane, split=0.5, contrast=False).tolist()
    [[1, 1, 1, 1, 2, 2]]
    """
    n = int(basins.max()) + 1
    u, v, counts, totals = _borders(basins, membrane)
    size = np.bincount(basins.ravel(), minlength=n).tolist()
    if contrast:
        bins = np.minimum((membrane * _BINS).astype(np.int64), _BINS - 1)
        hist = np.bincount((basins * _BINS + bins).ravel(), minlength=n * _BINS)
        hist = hist.reshape(n, _BINS)
        median = _median(hist).tolist()
    else:
        median = [0.0] * n  # the strength is then the mean

    def strength(a: int, b: int, border: list) -> float:
        mean = border[1] / border[0]
        m = min(median[a], median[b], 0.99)
        return (mean - m) / (1 - m) if mean > m else 0.0

    neighbours: dict[int, dict[int, list]] = {int(i): {} for i in np.unique(basins)}
    current: dict[tuple[int, int], float] = {}  # each border's strength now
    for a, b, count, total in zip(u.tolist(), v.tolist(), counts.tolist(), totals.tolist()):
        border = [count, total]  # shared by both cells' entries
        neighbours[a][b] = neighbours[b][a] = border
        current[a, b] = strength(a, b, border)
    heap = [(w, a, b) for (a, b), w in current.items()]
    heapq.heapify(heap)
    merged_into = np.arange(n)
    merges = []
    while heap and heap[0][0] < split:
        w, a, b = heapq.heappop(heap)
        if current.get((a, b)) != w:
            continue  # a border since merged or re-measured
        src, dst = (a, b) if size[a] < size[b] else (b, a)  # into the larger cell
        merges.append((src, dst))
        size[dst] += size[src]
        moved = False
        if contrast:
            hist[dst] += hist[src]
            old, median[dst] = median[dst], float(_median(hist[dst]))
            moved = median[dst] != old
        del current[a, b], neighbours[dst][src]
        changed = []
        for x, border in neighbours.pop(src).items():
            if x == dst:
                continue
            del neighbours[x][src], current[min(src, x), max(src, x)]
            kept = neighbours[dst].get(x)
            if kept is None:
                neighbours[dst][x] = neighbours[x][dst] = border
            else:
                kept[0] += border[0]
                kept[1] += border[1]
            changed.append(x)
        for x in neighbours[dst] if moved else changed:
            key = (min(dst, x), max(dst, x))
            w = strength(dst, x, neighbours[dst][x])
            if current.get(key) != w:
                current[key] = w
                heapq.heappush(heap, (w, *key))
    for src, dst in reversed(merges):  # a later merge carries an earlier one along
        merged_into[src] = merged_into[dst]
    return relabel_sequential(merged_into[basins])[0].astype(np.int32)


def _borders(labels: np.ndarray, membrane: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every border of ``labels``: its two labels ``u < v``, its number of 4-connected
    neighbouring pixel pairs and the sum over them of the larger ``membrane`` of the
    pair, as arrays ordered by ``(u, v)``."""
    pairs = ((np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1, :], np.s_[1:, :]))
    a = np.concatenate([labels[i].ravel() for i, _ in pairs]).astype(np.int64)
    b = np.concatenate([labels[j].ravel() for _, j in pairs]).astype(np.int64)
    values = np.concatenate([np.maximum(membrane[i], membrane[j]).ravel() for i, j in pairs])
    across = a != b
    low, high, values = np.minimum(a, b)[across], np.maximum(a, b)[across], values[across]
    n = int(labels.max()) + 1
    edges, which = np.unique(low * n + high, return_inverse=True)
    totals, counts = np.bincount(which, weights=values), np.bincount(which)
    return edges // n, edges % n, counts, totals


def _median(hist: np.ndarray) -> np.ndarray:
    """The median of each :data:`_BINS`-bin histogram (last axis) of values in [0, 1],
    a bin's centre: the first bin where the cumulative count reaches half the total."""
    cumulative = np.cumsum(hist, axis=-1)
    return ((cumulative < cumulative[..., -1:] / 2).sum(-1) + 0.5) / _BINS
