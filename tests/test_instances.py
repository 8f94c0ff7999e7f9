import numpy as np
import pytest

from conftest import disks
from skunet.instances import (
    LargestObject,
    distance_instances,
    label_components,
    largest_object,
    watershed_instances,
)
from skunet.targets import boundary_classes, distance_classes


def test_watershed_separates_touching_disks_that_components_merge():
    labels = disks((40, 60), [(20, 20), (20, 37)], radius=9)  # overlapping pair
    classes = boundary_classes(labels)
    fg = (classes > 0).astype(float)
    boundary = (classes == 2).astype(float)
    assert label_components(fg).max() == 1
    inst = watershed_instances(fg, boundary)
    assert inst.max() == 2
    # each predicted instance is mostly one true disk
    for k in (1, 2):
        _, counts = np.unique(labels[inst == k], return_counts=True)
        assert counts.max() / counts.sum() > 0.9


def test_threshold():
    p = np.array([[0.2, 0.6, 0.2, 0.9]])
    assert label_components(p, 0.5).tolist() == [[0, 1, 0, 2]]
    assert label_components(p, 0.7).max() == 1


def test_split_separates_touching_objects_whose_boundary_was_missed():
    labels = disks((40, 60), [(20, 20), (20, 37)], radius=9)
    fg = (labels > 0).astype(float)
    no_boundary = np.zeros_like(fg)  # the network missed the boundary between them
    assert watershed_instances(fg, no_boundary, split=None).max() == 1
    inst = watershed_instances(fg, no_boundary)
    assert inst.max() == 2
    for k in (1, 2):
        _, counts = np.unique(labels[inst == k], return_counts=True)
        assert counts.max() / counts.sum() > 0.9
    # one round object is never split, however large
    big = disks((60, 60), [(30, 30)], radius=20).astype(float)
    assert watershed_instances(big, np.zeros_like(big)).max() == 1


def test_largest_object_drops_other_objects_and_fills_holes_by_neighbours():
    cell = disks((40, 60), [(20, 20)], radius=12) > 0
    nucleus = disks((40, 60), [(20, 20)], radius=5) > 0
    classes = np.where(nucleus, 2, np.where(cell, 1, 0)).astype(np.uint8)
    broken = classes.copy()
    broken[20, 12:14] = 0  # a hole in the cytoplasm
    broken[19:22, 19:22] = 0  # a hole in the nucleus
    broken[5:8, 50:55] = 2  # a second, smaller object
    out = largest_object(broken)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, classes)
    assert largest_object(np.zeros((3, 4), np.uint8)).tolist() == [[0] * 4] * 3


def test_postprocess_applies_to_class_maps_and_survives_save_load(tmp_path):
    from conftest import make_blobs, tiny
    from skunet import UNetSegmenter

    X, y = make_blobs(4)
    seg = tiny(max_epochs=1, postprocess=largest_object).fit(X, y)
    raw = [p.argmax(0).astype(np.uint8) for p in seg.predict_proba(X)]
    assert any(not np.array_equal(m, largest_object(m)) for m in raw)  # 3 disks per image
    assert [m.tolist() for m in seg.predict(X)] == [largest_object(m).tolist() for m in raw]
    loaded = UNetSegmenter.load(seg.save(tmp_path / "m.skunet"))
    assert loaded.postprocess is largest_object
    np.testing.assert_array_equal(loaded.predict(X), seg.predict(X))


def test_membrane_instances_keep_apart_cells_that_a_gap_joins():
    from skunet.instances import membrane_instances

    cells = np.full((40, 61), 0.95)
    cells[:, 30] = 0.05  # a membrane between two cells ...
    cells[18:21, 30] = 0.7  # ... with a 3-pixel gap: its border's mean stays above 0.85
    assert label_components(cells).max() == 1
    labels = membrane_instances(cells, threshold=0.8)  # seeds above the gap
    assert labels.max() == 2
    assert len(np.unique(labels[:, :30])) == 1 and len(np.unique(labels[:, 31:])) == 1
    assert (labels > 0).all()  # every pixel belongs to a cell
    # seeds the gap joins are one cell; a round cell is never split
    assert membrane_instances(cells, threshold=0.5).max() == 1
    round_cell = disks((50, 50), [(25, 25)], radius=18).astype(float)
    assert membrane_instances(round_cell).max() == 1


class TestMembraneInstances:
    """The EM decoder never loses a cell, keeps apart cells that a gap joins, merges the
    pieces of a cell with a dark inside and never merges across an intact membrane."""

    @staticmethod
    def three_cells(gap_rows=None):
        """A large cell, a 3-pixel-wide thin cell, a large cell, between 1-px membranes
        (optionally with a gap in the left membrane at ``gap_rows``)."""
        cells = np.full((40, 80), 0.95)
        cells[:, 35] = cells[:, 39] = 0.05
        if gap_rows is not None:
            cells[gap_rows, 35] = 0.8
        return cells

    @pytest.mark.parametrize("split", [0.5, 0.75, 0.85, 0.9])
    @pytest.mark.parametrize("threshold", [0.5, 0.9])
    def test_a_thin_cell_between_two_large_ones_survives(self, threshold, split):
        from skunet.instances import membrane_instances

        labels = membrane_instances(self.three_cells(), threshold, split)
        assert labels.max() == 3
        for columns in (slice(0, 35), slice(36, 39), slice(40, 80)):
            values = np.unique(labels[:, columns])
            assert len(values) == 1 and values[0] > 0

    @pytest.mark.parametrize("split", [0.5, 0.85, 0.9])
    def test_two_cells_joined_by_a_one_pixel_gap_come_back_as_two(self, split):
        from skunet.instances import membrane_instances

        cells = self.three_cells(gap_rows=20)
        assert label_components(cells, 0.5).max() == 2  # the gap merges two cells
        labels = membrane_instances(cells, threshold=0.85, split=split)
        assert labels.max() == 3
        for columns in (slice(0, 35), slice(36, 39), slice(40, 80)):
            assert len(np.unique(labels[:, columns])) == 1

    def test_the_pieces_of_a_cell_with_a_dark_inside_merge(self):
        """A dark band inside the left cell (cell probability 0.3, membrane 0.7) cuts
        its components in two; the agglomeration joins them, not across the membrane."""
        from skunet.instances import membrane_instances

        cells = self.three_cells()
        cells[:, 10:14] = 0.3
        assert label_components(cells).max() == 4
        labels = membrane_instances(cells, threshold=0.5, split=0.85)
        assert labels.max() == 3
        assert len(np.unique(labels[:, :35])) == 1
        assert len(np.unique(labels[:, 36:39])) == 1 and labels[0, 37] != labels[0, 0]
        # a border as strong as the split stays: the band is kept as a border
        assert membrane_instances(cells, threshold=0.5, split=0.6).max() == 4

    def test_the_pieces_of_a_dark_cell_merge_across_a_border_as_dark_as_a_membrane(self):
        """The left cell's inside is dark all over (membrane probability 0.45) and a
        false membrane of 0.9 cuts it: against that inside it is a weak border and the
        pieces merge; the border's mean alone (``contrast=False``) keeps them apart,
        and the true membranes (0.95) stay against the bright cells."""
        from skunet.instances import membrane_instances

        cells = self.three_cells()
        cells[:, :35] = 0.55
        cells[:, 17] = 0.1
        labels = membrane_instances(cells, threshold=0.5, split=0.85)
        assert labels.max() == 3
        assert len(np.unique(labels[:, :35])) == 1
        for columns in (slice(36, 39), slice(40, 80)):
            assert len(np.unique(labels[:, columns])) == 1
        plain = membrane_instances(cells, threshold=0.5, split=0.85, contrast=False)
        assert plain.max() == 4 and plain[0, 0] != plain[0, 30]

    @pytest.mark.parametrize("seed", range(4))
    @pytest.mark.parametrize(
        ("split", "contrast", "inside"), [(0.5, True, 0.1), (0.75, True, 0.1),
        (0.85, True, 0.1), (0.85, False, 0.15), (0.5, False, 0.15)],
    )  # fmt: skip
    def test_never_merged_across_an_intact_membrane(self, seed, split, contrast, inside):
        """Membrane probability ``1 - inside`` or more on every membrane pixel, at most
        ``inside`` in the cells: a border's strength is at least
        ``(1 - 2 * inside) / (1 - inside)`` (medians to 0.01), about 0.89 for 0.1."""
        from skimage.measure import label

        from conftest import membrane_cells
        from skunet.instances import membrane_instances

        rng = np.random.default_rng(seed)
        noise = rng.uniform(0, inside, (96, 96))
        cells = membrane_cells((96, 96), step=12, seed=seed) * (1 - inside) + noise
        labels = membrane_instances(cells, threshold=0.5, split=split, contrast=contrast)
        components = label(cells > 0.5, connectivity=1)
        assert (labels > 0).all()  # every pixel has a cell
        inside = components > 0
        for value in np.unique(labels):  # each cell holds one component
            assert len(np.unique(components[(labels == value) & inside])) == 1
        assert len(np.unique(labels)) == components.max()  # none lost


def test_em_models_give_membrane_instances():
    from conftest import membrane_cells, tiny
    from skunet.instances import membrane_instances

    y = [membrane_cells((64, 64), seed=s) for s in range(3)]
    X = [m.astype(np.float32) * 0.6 + 0.2 for m in y]
    seg = tiny(max_epochs=1, task="em", callbacks__calibration=None).fit(X, y)  # defaults
    cells = [p[1] for p in seg.predict_proba(X)]
    # uncalibrated: threshold 0.5, split 0.85
    for labels, c in zip(seg.predict_instances(X), cells):
        np.testing.assert_array_equal(labels, membrane_instances(c, 0.5, 0.85))
    for labels, c in zip(seg.predict_instances(X, split=None), cells):
        np.testing.assert_array_equal(labels, label_components(c))


def test_largest_object_opening_cuts_a_neighbour_on_a_bridge_and_a_spur():
    cell = disks((60, 90), [(30, 30)], radius=20) > 0
    nucleus = disks((60, 90), [(30, 30)], radius=8) > 0
    classes = np.where(nucleus, 2, np.where(cell, 1, 0)).astype(np.uint8)
    touching = classes.copy()
    touching |= (disks((60, 90), [(30, 75)], radius=12) > 0).astype(np.uint8)  # neighbour
    touching[29:32, 48:66] = 1  # the 3 px bridge that joins them
    touching[5:8, 30] = 1  # a 1 px spur on top of the cell
    assert largest_object(touching)[30, 75] == 1  # without opening the neighbour stays
    out = LargestObject(opening_radius=2)(touching)
    assert out[30, 75] == 0 and out[6, 30] == 0 and out[30, 60] == 0
    assert (out == 2).sum() == (classes == 2).sum()  # the nucleus untouched
    assert np.mean(out.astype(bool) == classes.astype(bool)) > 0.995  # corners barely move
    # a cell smaller than the disk is kept as it is
    tiny_cell = np.zeros((9, 9), np.uint8)
    tiny_cell[4, 4] = 2
    np.testing.assert_array_equal(LargestObject(3)(tiny_cell), tiny_cell)


def test_largest_object_settings_survive_save_load(tmp_path):
    from conftest import make_blobs, tiny
    from skunet import UNetSegmenter

    X, y = make_blobs(2)
    seg = tiny(max_epochs=1, postprocess=LargestObject(opening_radius=2)).fit(X, y)
    loaded = UNetSegmenter.load(seg.save(tmp_path / "m.skunet"))
    assert loaded.postprocess == LargestObject(opening_radius=2)
    np.testing.assert_array_equal(loaded.predict(X), seg.predict(X))


def distance_probabilities(labels, levels=4):
    """One-hot probabilities of the distance classes of instance labels."""
    classes = distance_classes(labels, levels)
    return (classes[None] == np.arange(levels + 1)[:, None, None]).astype(np.float32)


def test_distance_instances_separate_touching_disks_that_components_merge():
    labels = disks((40, 60), [(20, 20), (20, 37)], radius=9)
    p = distance_probabilities(labels)
    assert label_components(1 - p[0]).max() == 1
    assert distance_instances(p, split=None).max() == 1
    inst = distance_instances(p)
    assert inst.max() == 2
    assert np.array_equal(distance_instances(p, sigma=0) > 0, labels > 0)  # all assigned
    overlap = ((inst > 0) & (labels > 0)).sum() / ((inst > 0) | (labels > 0)).sum()
    assert overlap > 0.95  # smoothing moves the edge by a pixel at most
    for k in (1, 2):
        _, counts = np.unique(labels[inst == k], return_counts=True)
        assert counts.max() / counts.sum() > 0.9


def test_distance_instances_threshold_and_soft_levels():
    labels = disks((30, 60), [(15, 15), (15, 45)], radius=8)
    p = distance_probabilities(labels)
    faint = p.copy()
    faint[:, labels == 2] = 0.6 * faint[:, labels == 2]
    faint[0, labels == 2] += 0.4  # the second object is 60 % foreground
    assert distance_instances(faint).max() == 2
    assert distance_instances(faint, threshold=0.7).max() == 1
    # an object whose levels are uncertain (spread over all of them) still has one seed
    rng = np.random.default_rng(0)
    soft = 0.7 * p + 0.3 * rng.dirichlet(np.ones(5), size=(30, 60)).transpose(2, 0, 1)
    assert distance_instances(soft.astype(np.float32)).max() == 2


def test_distance_models_give_instances_through_the_predictor():
    from conftest import make_blobs, tiny

    X, y = make_blobs(6)
    seg = tiny(n_classes=5, target="distance", train_split=None, max_epochs=1).fit(X, y)
    assert seg.predict_proba(X[:2]).shape == (2, 5, 48, 48)
    instances = seg.predict_instances(X[:2], split=None)
    assert instances.shape == (2, 48, 48) and instances.dtype == np.int32
