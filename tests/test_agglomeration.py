import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.graph import RAG, merge_hierarchical
from skimage.measure import label
from skimage.segmentation import watershed

from conftest import membrane_cells
from skunet.agglomeration import _borders, _median, agglomerate


def reference(basins, membrane, split, contrast):
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


def em_like(seed, size=96):
    """A cell-probability map: membranes of varied strength, a fifth of the cells
    dark, noise."""
    rng = np.random.default_rng(seed)
    regions = label(membrane_cells((size, size), step=12, seed=seed), connectivity=1)
    level = np.where(rng.random(regions.max() + 1) < 0.2, rng.uniform(0.4, 0.7), 0.9)
    cells = np.where(regions > 0, level[regions], rng.uniform(0.0, 0.5, regions.shape))
    cells += rng.normal(0, 0.2, cells.shape)
    return np.clip(ndi.gaussian_filter(cells, 0.5), 0, 1)


def basins_of(cell_prob, threshold):
    """The basins :func:`skunet.instances.membrane_instances` agglomerates."""
    seeds = label(cell_prob > threshold, connectivity=1)
    return watershed(ndi.gaussian_filter(1 - cell_prob, 1.0), seeds)


def same_partition(a, b):
    pairs = np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b)
    return len(np.unique(a)) == len(np.unique(b)) == len(pairs)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("contrast", [True, False])
def test_the_cells_of_scikit_images_merge_hierarchical(seed, contrast):
    cell_prob = em_like(seed)
    for threshold in (0.5, 0.7):
        basins = basins_of(cell_prob, threshold)
        membrane = 1 - cell_prob
        assert basins.max() > 20  # many basins to merge
        for split in (0.6, 0.7):
            cells = agglomerate(basins, membrane, split, contrast)
            expected = reference(basins, membrane, split, contrast)
            assert same_partition(cells, expected), (threshold, split)
            assert 1 < cells.max() < basins.max()  # some merged, not all
            assert cells.min() == 1 and len(np.unique(cells)) == cells.max()


def test_a_map_of_noise_merges_into_few_cells():
    """Thousands of basins, one cell growing over them: what a network that has barely
    learned gives. scikit-image's merging took about 80 s on this map (2 CPU cores,
    recomputing every border of the growing cell after each merge), agglomerate 1 s."""
    rng = np.random.default_rng(0)
    noise = ndi.gaussian_filter(rng.random((512, 512)), 0.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    basins = basins_of(noise, 0.5)
    assert basins.max() > 5000
    cells = agglomerate(basins, 1 - noise, 0.85)
    assert cells.max() < basins.max() / 100
