import numpy as np

from conftest import disks
from skunet.instances import label_components, watershed_instances
from skunet.targets import boundary_classes


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
