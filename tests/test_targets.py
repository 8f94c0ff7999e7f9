import numpy as np

from conftest import disks
from skunet.targets import boundary_classes, mask_classes


def test_touching_objects_are_separated_by_boundary():
    labels = np.zeros((5, 8), int)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2
    classes = boundary_classes(labels)
    assert classes[2, 2] == 1 and classes[2, 5] == 1
    assert classes[2, 3] == 2 and classes[2, 4] == 2
    assert (classes[labels == 0] == 0).all()


def test_boundary_classes_of_disks_ring():
    classes = boundary_classes(disks((21, 21), [(10, 10)], 6))
    assert set(np.unique(classes)) == {0, 1, 2}
    assert classes[10, 10] == 1 and classes[10, 4] == 2


def test_mask_classes():
    assert mask_classes(np.array([[0, 2, 5]]), 2).tolist() == [[0, 1, 1]]
    assert mask_classes(np.array([[0, 2, 1]]), 3).tolist() == [[0, 2, 1]]
