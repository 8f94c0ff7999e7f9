import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import membrane_cells
from skunet.datasets import (
    WBC_GRAY_LEVELS,
    load_dsb2018,
    load_isbi2012,
    load_sample,
    load_wbc,
    read_image_folder,
)
from skunet.instances import cell_instances


def write_pair(folder, name, image, mask, ext=".png"):
    (folder / "images").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    if ext == ".tif":
        tifffile.imwrite(folder / "images" / f"{name}.tif", image)
        tifffile.imwrite(folder / "masks" / f"{name}.tif", mask)
    else:
        Image.fromarray(image).save(folder / "images" / f"{name}{ext}")
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


class TestReadImageFolder:
    def test_pairs_by_name_across_formats(self, tmp_path):
        write_pair(tmp_path, "b", np.full((4, 5), 7, np.uint8), np.ones((4, 5), np.uint8))
        write_pair(tmp_path, "a", np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3), np.uint8), ".bmp")
        X, y = read_image_folder(tmp_path / "images", tmp_path / "masks")
        assert [x.shape for x in X] == [(3, 3, 3), (4, 5)]
        assert [m.shape for m in y] == [(3, 3), (4, 5)]

    def test_unpaired_file_is_named(self, tmp_path):
        write_pair(tmp_path, "a", np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "images" / "lonely.png")
        with pytest.raises(ValueError, match=r"lonely\.png"):
            read_image_folder(tmp_path / "images", tmp_path / "masks")

    def test_unreadable_file_is_named(self, tmp_path):
        write_pair(tmp_path, "a", np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))
        (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        with pytest.raises(ValueError, match=r"cannot read image file .*a\.png"):
            read_image_folder(tmp_path / "images", tmp_path / "masks")

    def test_missing_or_empty_folder(self, tmp_path):
        with pytest.raises(ValueError, match="is not a folder"):
            read_image_folder(tmp_path / "nope", tmp_path)
        (tmp_path / "empty").mkdir()
        with pytest.raises(ValueError, match="no image files"):
            read_image_folder(tmp_path / "empty", tmp_path)


def test_dsb2018_layout(tmp_path):
    labels = np.zeros((6, 6), np.uint16)
    labels[1:3, 1:3] = 1
    labels[4:6, 4:6] = 300
    (tmp_path / "train").mkdir()
    write_pair(tmp_path / "train", "id1", np.full((6, 6), 9, np.uint8), labels, ".tif")
    X, y = load_dsb2018(tmp_path)
    assert X[0].dtype == np.uint8 and y[0].dtype == np.uint16 and y[0].max() == 300


def test_bundled_sample():
    X, y = load_sample("nuclei")
    assert len(X) == len(y) == 12
    assert all(x.shape == m.shape for x, m in zip(X, y))
    assert len({x.shape for x in X}) == 3  # sizes vary
    with pytest.raises(ValueError, match=r"choose one of \['nuclei'\]"):
        load_sample("wbc")


def write_kaggle(root, cases):
    """Kaggle's stage1_train/<id>/images/<id>.png + <id>/masks/*.png layout."""
    for case_id, (image, masks) in cases.items():
        (root / case_id / "images").mkdir(parents=True)
        (root / case_id / "masks").mkdir()
        Image.fromarray(image).save(root / case_id / "images" / f"{case_id}.png")
        for k, mask in enumerate(masks):
            Image.fromarray(mask).save(root / case_id / "masks" / f"m{k}.png")


class TestKaggleLayout:
    def setup_method(self):
        gray = np.zeros((6, 8, 4), np.uint8)
        gray[..., :3] = np.arange(48, dtype=np.uint8).reshape(6, 8, 1)
        gray[..., 3] = 255
        color = np.zeros((6, 8, 4), np.uint8)
        color[..., 0], color[..., 3] = 200, 255
        a = np.zeros((6, 8), np.uint8)
        a[0:3, 0:3] = 255
        b = np.zeros((6, 8), np.uint8)
        b[2:5, 2:6] = 255  # shares pixel (2, 2) with a
        self.cases = {"id1": (gray, [a, b]), "id2": (color, [b])}

    def test_masks_become_instance_labels(self, tmp_path):
        write_kaggle(tmp_path / "stage1_train", self.cases)
        X, y = load_dsb2018(tmp_path)
        assert X[0].shape == (6, 8) and X[0].dtype == np.uint8
        np.testing.assert_array_equal(X[0], np.arange(48).reshape(6, 8))
        assert y[0].dtype == np.uint16 and y[0].max() == 2
        assert y[0][2, 2] == 1  # the first mask keeps shared pixels
        assert (y[0] == 2).sum() == 3 * 4 - 1
        assert X[1].ndim == 2 and 0 < X[1].mean() < 255  # colour converted to gray

    def test_rgb_on_request_and_folder_itself(self, tmp_path):
        write_kaggle(tmp_path, self.cases)
        X, _ = load_dsb2018(tmp_path, color="rgb")
        assert X[0].shape == (6, 8, 3) and X[1][0, 0].tolist() == [200, 0, 0]

    def test_errors_name_the_case(self, tmp_path):
        write_kaggle(tmp_path, self.cases)
        for p in (tmp_path / "id2" / "masks").iterdir():
            p.unlink()
        with pytest.raises(ValueError, match=r"id2.* has no masks"):
            load_dsb2018(tmp_path)
        (tmp_path / "id1" / "masks" / "m0.png").write_bytes(b"not a png")
        with pytest.raises(ValueError, match=r"cannot read image file .*id1/masks/m0\.png"):
            load_dsb2018(tmp_path)
        with pytest.raises(ValueError, match="neither train/images"):
            load_dsb2018(tmp_path / "id1" / "masks")
        with pytest.raises(ValueError, match="color='cmyk'"):
            load_dsb2018(tmp_path, color="cmyk")


def test_shared_layout_rgb(tmp_path):
    (tmp_path / "train").mkdir()
    write_pair(tmp_path / "train", "a", np.full((3, 3), 7, np.uint8), np.ones((3, 3), np.uint8))
    X, _ = load_dsb2018(tmp_path, color="rgb")
    assert X[0].shape == (3, 3, 3)


class TestLoadWBC:
    def cells(self, tmp_path, gray=False):
        rng = np.random.default_rng(0)
        masks = {}
        for name, shape in (("001", (120, 120)), ("002", (88, 96)), ("003", (100, 104))):
            mask = rng.integers(0, 3, shape).astype(np.uint8)
            stored = np.array([0, 128, 255], np.uint8)[mask] if gray else mask
            write_pair(tmp_path, name, rng.integers(0, 255, (*shape, 3), dtype=np.uint8), stored)
            masks[name] = mask
        return masks

    def test_class_index_masks_at_their_own_sizes(self, tmp_path):
        masks = self.cells(tmp_path)
        X, y = load_wbc(tmp_path)
        assert [x.shape for x in X] == [(120, 120, 3), (88, 96, 3), (100, 104, 3)]
        for got, want in zip(y, masks.values()):
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, want)

    def test_gray_level_masks_with_explicit_mapping(self, tmp_path):
        masks = self.cells(tmp_path, gray=True)
        _, y = load_wbc(tmp_path, mapping=WBC_GRAY_LEVELS)
        for got, want in zip(y, masks.values()):
            np.testing.assert_array_equal(got, want)

    def test_gray_levels_without_mapping_are_refused_with_a_hint(self, tmp_path):
        self.cells(tmp_path, gray=True)
        with pytest.raises(ValueError, match=r"mask '001'.*mapping=WBC_GRAY_LEVELS"):
            load_wbc(tmp_path)

    def test_value_outside_the_mapping_is_named(self, tmp_path):
        self.cells(tmp_path, gray=True)
        with pytest.raises(ValueError, match=r"mask '001' has values \[255\]"):
            load_wbc(tmp_path, mapping={0: 0, 128: 1})

    def test_mask_of_another_size_is_named(self, tmp_path):
        self.cells(tmp_path)
        Image.fromarray(np.zeros((90, 96), np.uint8)).save(tmp_path / "masks" / "002.png")
        with pytest.raises(ValueError, match=r"mask '002' has shape \(90, 96\)"):
            load_wbc(tmp_path)

    def test_shared_data_if_present(self):
        from pathlib import Path

        root = Path(__file__).resolve().parents[2] / "shared" / "data" / "wbc"
        if not root.exists():
            pytest.skip("shared WBC data not present")
        X, y = load_wbc(root)
        assert len(X) == 240 and all(x.shape[:2] == m.shape for x, m in zip(X, y))
        assert set(np.unique(np.concatenate([m.ravel() for m in y]))) == {0, 1, 2}


class TestLoadISBI:
    def write_pngs(self, root, n=3, bad=None):
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for i in range(n):
            Image.fromarray(np.full((16, 12), i * 10, np.uint8)).save(root / f"images/{i:02}.png")
            label = membrane_cells((16, 12), step=5) * 255
            if i == bad:
                label[0, 0] = 128
            Image.fromarray(label.astype(np.uint8)).save(root / f"labels/{i:02}.png")

    def test_png_folders(self, tmp_path):
        self.write_pngs(tmp_path)
        X, y = load_isbi2012(tmp_path)
        assert len(X) == 3 and X[1][0, 0] == 10
        assert y[0].dtype == np.uint8 and set(np.unique(y[0])) == {0, 1}
        np.testing.assert_array_equal(y[0], membrane_cells((16, 12), step=5))

    def test_tif_stacks(self, tmp_path):
        volume = np.stack([np.full((16, 12), i, np.uint8) for i in range(4)])
        labels = np.stack([membrane_cells((16, 12), step=5) * 255] * 4).astype(np.uint8)
        tifffile.imwrite(tmp_path / "train-volume.tif", volume, photometric="minisblack")
        tifffile.imwrite(tmp_path / "train-labels.tif", labels, photometric="minisblack")
        X, y = load_isbi2012(tmp_path)
        assert len(X) == 4 and X[3][0, 0] == 3 and y[2].max() == 1

    def test_errors_name_the_file(self, tmp_path):
        with pytest.raises(ValueError, match="neither images/"):
            load_isbi2012(tmp_path)
        self.write_pngs(tmp_path, bad=1)
        with pytest.raises(ValueError, match=r"01\.png.*128"):
            load_isbi2012(tmp_path)


@pytest.mark.skipif(
    not (__import__("pathlib").Path(__file__).parents[2] / "shared/data/isbi2012").is_dir(),
    reason="shared ISBI 2012 data not present",
)
def test_shared_isbi_data():
    X, y = load_isbi2012(__import__("pathlib").Path(__file__).parents[2] / "shared/data/isbi2012")
    assert len(X) == 30 and X[0].shape == (512, 512)
    assert 0.7 < np.mean([m.mean() for m in y]) < 0.85  # about 78 % cell interior
    assert all(cell_instances(m).max() > 50 for m in y[:3])
