import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label

from conftest import membrane_cells
from skunet.agglomeration import agglomerate
from skunet.instances import membrane_basins

# scikit-image's merge_hierarchical doing the same merging: the decoder until 2026-12-02
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from agglomeration import reference, same_partition


def em_like(seed, size=96):
    """A cell-probability map: membranes of varied strength, a fifth of the cells
    dark, noise."""
    rng = np.random.default_rng(seed)
    regions = label(membrane_cells((size, size), step=12, seed=seed), connectivity=1)
    level = np.where(rng.random(regions.max() + 1) < 0.2, rng.uniform(0.4, 0.7), 0.9)
    cells = np.where(regions > 0, level[regions], rng.uniform(0.0, 0.5, regions.shape))
    cells += rng.normal(0, 0.2, cells.shape)
    return np.clip(ndi.gaussian_filter(cells, 0.5), 0, 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("contrast", [True, False])
def test_the_cells_of_scikit_images_merge_hierarchical(seed, contrast):
    cell_prob = em_like(seed)
    for threshold in (0.5, 0.7):
        basins, membrane = membrane_basins(cell_prob, threshold)
        assert basins.max() > 20  # many basins to merge
        for split in (0.6, 0.7):
            cells = agglomerate(basins, membrane, split, contrast)
            expected = reference(basins, membrane, split, contrast)
            assert same_partition(cells, expected), (threshold, split)
            assert 1 < cells.max() < basins.max()  # some merged, not all
            assert cells.min() == 1 and len(np.unique(cells)) == cells.max()


def test_a_map_of_noise_merges_into_few_cells():
    """Thousands of basins, one cell growing over them: what a network that has barely
    learned gives; scikit-image's merge_hierarchical, recomputing every border of the
    growing cell after each merge, takes minutes on it (benchmarks/agglomeration.py)."""
    rng = np.random.default_rng(0)
    noise = ndi.gaussian_filter(rng.random((512, 512)), 0.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    basins, membrane = membrane_basins(noise, 0.5)
    assert basins.max() > 5000
    cells = agglomerate(basins, membrane, 0.85)
    assert cells.max() < basins.max() / 100
