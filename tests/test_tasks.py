"""The task registry: presets, command line and evaluation read one table."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import make_blobs, tiny
from skunet import UNetSegmenter, presets
from skunet.cli import build_parser
from skunet.evaluation import METRICS
from skunet.losses import WeightMapLoss
from skunet.presets import generic_segmenter, segmenter
from skunet.tasks import TASKS, as_task_color, get_task, task_of


def settings(seg):
    """A segmenter's parameters, objects (callbacks, augmentations) by their type."""
    plain = (int, float, str, bool, type(None), type)
    return {
        k: v if isinstance(v, plain) else type(v) for k, v in seg.get_params(deep=False).items()
    }


class TestRegistry:
    def test_every_task_is_complete(self):
        for name, task in TASKS.items():
            assert task.name == name and task.recipes and task.summary and task.masks
            assert set(task.metrics.values()) | set(task.label_metrics.values()) <= set(METRICS)
            seg = segmenter(name)  # every task's default recipe builds, and carries its task
            assert seg.task == name and task_of(seg) is task
            assert settings(seg) == settings(segmenter(name, task.default_recipe))
            for recipe in task.recipes:
                assert segmenter(name, recipe).task == name
        # the documented preset functions make the same segmenters
        for name, function in [("nuclei", presets.nuclei_segmenter), ("em", presets.em_segmenter),
                               ("blood-cells", presets.blood_cell_segmenter),
                               ("generic", presets.generic_segmenter)]:  # fmt: skip
            assert settings(function()) == settings(segmenter(name))
            if task.class_names is not None:
                assert len(task.class_names) == seg.n_classes

    def test_a_new_task_is_one_record(self, monkeypatch):
        record = dataclasses.replace(
            TASKS["generic"], name="spots", recipes={"tiny": {"max_epochs": 2}},
            default_recipe="tiny",
        )  # fmt: skip
        monkeypatch.setitem(TASKS, "spots", record)
        seg = segmenter("spots", target="distance")
        assert (seg.task, seg.max_epochs, seg.n_classes, task_of(seg)) == ("spots", 2, 5, record)
        args = build_parser().parse_args(["train", "--preset", "spots", "--images", "i",
                                          "--masks", "m", "--out", "o.skunet"])  # fmt: skip
        assert args.preset == "spots"
        with pytest.raises(ValueError, match="default_recipe 'big' is not one of its recipes"):
            dataclasses.replace(record, default_recipe="big")

    def test_presets_read_the_registry(self):
        assert segmenter("em", "fast").get_params()["module__base_channels"] == 16
        assert segmenter("em").get_params()["module__base_channels"] == 64  # the default
        # a recipe's objects are copied for each segmenter, never shared
        a, b = segmenter("blood-cells"), segmenter("blood-cells")
        assert a.postprocess is not b.postprocess
        with pytest.raises(ValueError, match="unknown task 'cells'"):
            get_task("cells")
        with pytest.raises(ValueError, match="unknown em recipe 'gpu'"):
            segmenter("em", "gpu")

    def test_generic_task_binary_classes_or_instances(self):
        assert (generic_segmenter().n_classes, generic_segmenter().target) == (2, "mask")
        assert generic_segmenter(n_classes=5).n_classes == 5
        seg = generic_segmenter(instances=True)
        assert (seg.n_classes, seg.target, seg.task) == (3, "boundary", "generic")

    def test_colors(self):
        rgba = np.zeros((4, 5, 4), np.uint8)
        assert as_task_color(rgba, 1).shape == (4, 5)
        assert as_task_color(rgba, 3).shape == (4, 5, 3)
        assert as_task_color(rgba, None).shape == (4, 5, 3)  # the alpha channel dropped
        assert as_task_color(np.zeros((4, 5, 2)), None).shape == (4, 5, 2)


class TestModelFiles:
    def test_the_model_file_stores_the_task(self, tmp_path):
        X, y = make_blobs(4)
        seg = tiny(max_epochs=1, task="em").fit(X, [(m > 0).astype(np.uint8) for m in y])
        loaded = UNetSegmenter.load(seg.save(tmp_path / "m.skunet"))
        assert loaded.task == "em" and task_of(loaded).name == "em"

    def test_old_files_without_a_task_are_told_from_the_model(self, tmp_path):
        X, y = make_blobs(4)
        cells = [(m > 0).astype(np.uint8) for m in y]
        seg = tiny(max_epochs=1, criterion=WeightMapLoss).fit(X, cells)
        assert seg.task is None and task_of(seg).name == "em"
        assert task_of(tiny(n_classes=3, target="boundary")).name == "nuclei"
        assert task_of(tiny(n_classes=3)).name == "blood-cells"
        assert task_of(tiny(n_classes=4)).name == "generic"
        # a file written before models stored their task: no "task" among its parameters
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = seg.save(tmp_path / "m.skunet")
        with safe_open(str(path), framework="pt") as f:
            metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        params = json.loads(metadata["params"])
        del params["task"]
        save_file(
            tensors, tmp_path / "old.skunet", metadata={**metadata, "params": json.dumps(params)}
        )
        loaded = UNetSegmenter.load(tmp_path / "old.skunet")
        assert loaded.task is None and task_of(loaded).name == "em"
        np.testing.assert_array_equal(loaded.predict(X), seg.predict(X))
