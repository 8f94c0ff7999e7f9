import os

import numpy as np
import pytest
import torch

from conftest import make_blobs, tiny
from skunet.callbacks import (
    CyclicLRScheduler,
    IoUScoring,
    LivePlot,
    OneCycleLRScheduler,
    ProgressBar,
    SegmentationCheckpoint,
    TimeLimit,
)
from skunet.metrics import iou_score


class TestCyclicLRScheduler:
    def test_lr_changes_every_batch_within_an_epoch(self, blobs):
        seg = tiny(max_epochs=2, patches_per_image=4, batch_size=2).fit(*blobs)
        lrs = seg.history[0, "batches", :, "event_lr"]
        assert len(lrs) == seg.history[0, "train_batch_count"] == 8  # 4 images x 4 / 2
        assert len(set(lrs)) == len(lrs)  # a new lr after every batch
        last = [b["event_lr"] for b in seg.history[-1, "batches"] if "event_lr" in b][-1]
        assert seg.optimizer_.param_groups[0]["lr"] != last  # stepped after the last batch

    def test_step_sizes_derived_from_batches_per_epoch(self, blobs):
        seg = tiny(max_epochs=8, patches_per_image=2, batch_size=2, lr=0.01)
        seg.fit(*blobs)
        batches = seg.history[0, "train_batch_count"]
        sched = seg.callbacks_[[n for n, _ in seg.callbacks_].index("lr_scheduler")][1]
        kw = sched.resolved_kwargs(seg, batches)
        assert kw["max_lr"] == 0.01 and kw["base_lr"] == pytest.approx(0.001)
        assert kw["step_size_up"] == kw["step_size_down"] == 8 * batches // 4  # two cycles
        lrs = [b["event_lr"] for e in seg.history[:, "batches"] for b in e if "event_lr" in b]
        assert max(lrs) <= 0.01 + 1e-12 and min(lrs) >= 0.001 - 1e-12
        # the last batch trains one step above base_lr: the cycles end with the run
        assert lrs[-1] == pytest.approx(0.001 + 0.009 / kw["step_size_up"])

    def test_sgd_momentum_is_cycled(self, blobs):
        seg = tiny(optimizer=torch.optim.SGD, optimizer__momentum=0.9).fit(*blobs)
        sched = dict(seg.callbacks_)["lr_scheduler"]
        assert sched.lr_scheduler_.cycle_momentum

    def test_explicit_values_win(self, blobs):
        seg = tiny(
            callbacks__lr_scheduler__base_lr=0.002,
            callbacks__lr_scheduler__max_lr=0.2,
            callbacks__lr_scheduler__step_size_up=3,
        )
        seg.fit(*blobs)
        lrs = [b["event_lr"] for e in seg.history[:, "batches"] for b in e if "event_lr" in b]
        assert lrs[:2] == pytest.approx([0.002, 0.002 + (0.2 - 0.002) / 3])


def recorded_lrs(seg) -> list[float]:
    return [b["event_lr"] for e in seg.history[:, "batches"] for b in e if "event_lr" in b]


class TestOneCycleLRScheduler:
    def test_one_cycle_spans_the_run(self, blobs):
        seg = tiny(max_epochs=5, lr=0.01, batch_size=1)
        seg.set_params(callbacks__lr_scheduler=OneCycleLRScheduler()).fit(*blobs)
        batches = seg.history[0, "train_batch_count"]
        lrs = np.array(recorded_lrs(seg))
        scheduler = dict(seg.callbacks_)["lr_scheduler"]
        np.testing.assert_allclose(lrs, scheduler.planned_lrs(seg, batches))
        assert lrs.size == 5 * batches == 20
        assert lrs[0] == pytest.approx(0.01 / 25)  # warm-up from max_lr / div_factor
        assert lrs.max() == pytest.approx(0.01, rel=1e-3)
        assert np.argmax(lrs) == round(0.3 * lrs.size) - 1  # pct_start of the batches
        assert lrs[-1] == pytest.approx(0.01 / 25 / 1e4)  # annealed at the last batch
        assert np.all(np.diff(lrs[np.argmax(lrs) :]) < 0)

    def test_adam_beta1_and_sgd_momentum_are_cycled(self, blobs):
        for optimizer, kwargs in ((torch.optim.Adam, {}), (torch.optim.SGD, {"momentum": 0.9})):
            seg = tiny(
                optimizer=optimizer,
                callbacks__lr_scheduler=OneCycleLRScheduler(),
                **{f"optimizer__{k}": v for k, v in kwargs.items()},
            ).fit(*blobs)
            assert dict(seg.callbacks_)["lr_scheduler"].lr_scheduler_.cycle_momentum
        plain = tiny(optimizer=torch.optim.SGD, callbacks__lr_scheduler=OneCycleLRScheduler())
        plain.fit(*blobs)  # no momentum to cycle: no error, rates only
        assert not dict(plain.callbacks_)["lr_scheduler"].lr_scheduler_.cycle_momentum

    def test_continuing_after_a_finished_cycle_starts_a_new_one(self, blobs):
        seg = tiny(max_epochs=3, callbacks__lr_scheduler=OneCycleLRScheduler()).fit(*blobs)
        first = recorded_lrs(seg)
        seg.partial_fit(*blobs)  # three more epochs
        assert len(seg.history) == 6
        assert recorded_lrs(seg)[len(first) :] == pytest.approx(first)

    def test_a_longer_continuation_runs_on_into_a_new_cycle(self, blobs):
        seg = tiny(max_epochs=2, callbacks__lr_scheduler=OneCycleLRScheduler()).fit(*blobs)
        seg.set_params(max_epochs=3).partial_fit(*blobs)  # 2 of 3 epochs "done": mid-cycle
        fresh = tiny(max_epochs=3, callbacks__lr_scheduler=OneCycleLRScheduler()).fit(*blobs)
        cycle = recorded_lrs(fresh)
        lrs = recorded_lrs(seg)[2:]  # one batch per epoch
        assert lrs == pytest.approx(cycle[2:] + cycle[:2])  # the cycle's end, then a new one

    def test_clones_with_its_settings_and_refuses_another_policy(self, blobs):
        from sklearn.base import clone

        seg = tiny(max_epochs=6, callbacks__lr_scheduler=OneCycleLRScheduler(pct_start=0.5))
        copy = clone(seg)  # what cross_val_score and GridSearchCV do
        assert copy.callbacks__lr_scheduler.kwargs["pct_start"] == 0.5
        assert recorded_lrs(copy.fit(*blobs)) == pytest.approx(recorded_lrs(seg.fit(*blobs)))
        with pytest.raises(ValueError, match="steps OneCycleLR every batch"):
            OneCycleLRScheduler(step_every="epoch")

    def test_the_cyclic_scheduler_clones_too(self, blobs):
        from sklearn.base import clone

        seg = tiny(max_epochs=4, callbacks__lr_scheduler=CyclicLRScheduler(mode="triangular2"))
        copy = clone(seg)
        assert copy.callbacks__lr_scheduler.kwargs["mode"] == "triangular2"
        assert recorded_lrs(copy.fit(*blobs)) == pytest.approx(recorded_lrs(seg.fit(*blobs)))
        with pytest.raises(ValueError, match="CyclicLRScheduler steps CyclicLR every batch"):
            CyclicLRScheduler(policy=torch.optim.lr_scheduler.OneCycleLR)


class TestIoUScoring:
    def test_matches_iou_of_validation_predictions(self, blobs):
        X, y = blobs
        seg = tiny(max_epochs=1, callbacks__checkpoint=None, train_split=None)
        seg.set_params(
            train_split=lambda ds: (
                torch.utils.data.Subset(ds, [0, 1, 2, 3]),
                torch.utils.data.Subset(ds, [4, 5]),
            )
        )
        seg.fit(X, y)
        pred = seg.predict(X[4:])
        expected = iou_score([(m > 0).astype(int) for m in y[4:]], list(pred))
        assert seg.history[-1, "valid_iou"] == pytest.approx(expected, abs=1e-9)
        assert "valid_iou_best" in seg.history[-1]

    def test_nan_loss_is_never_best(self, blobs):
        seg = tiny(max_epochs=1).fit(*blobs)
        iou = dict(seg.callbacks_)["iou"]
        seg.history.new_epoch()
        seg.history.new_batch()
        seg.history.record_batch("train_loss", 0.5)
        seg.history.new_batch()
        seg.history.record_batch("valid_loss", float("nan"))
        iou.confusion_ = np.array([[10, 0], [0, 10]])  # a perfect-looking epoch
        iou.on_epoch_end(seg)
        assert np.isnan(seg.history[-1, "valid_iou"])
        assert seg.history[-1, "valid_iou_best"] is False


class TestSegmentationCheckpoint:
    def test_unique_directory_outside_cwd_removed_after_fit(self, blobs, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        seen = []

        class Spy(SegmentationCheckpoint):
            def save_model(self, net):
                super().save_model(net)
                seen.append((self.dirname_, sorted(os.listdir(self.dirname_))))

        tiny(callbacks__checkpoint=Spy()).fit(*blobs)
        tiny(callbacks__checkpoint=Spy()).fit(*blobs)
        dirs = {d for d, _ in seen}
        assert len(dirs) == 2 and not any(d.startswith(str(tmp_path)) for d in dirs)
        assert all(
            "params.pt" in files and not any(".tmp" in f for f in files) for _, files in seen
        )
        assert not any(os.path.exists(d) for d in dirs)
        assert os.listdir(tmp_path) == []

    def test_a_fit_that_raises_leaves_no_folder_behind(self, blobs):
        """skorch skips on_train_end when training raises; the estimator removes the
        temporary folder itself."""
        from skorch.callbacks import Callback

        seen = []

        class Boom(Callback):
            def on_epoch_end(self, net, **kwargs):
                seen.append(dict(net.callbacks_)["checkpoint"].dirname_)
                raise RuntimeError("boom")

        seg = tiny(callbacks=[("boom", Boom())])
        with pytest.raises(RuntimeError, match="boom"):
            seg.fit(*blobs)
        assert "skunet-checkpoint-" in seen[0] and not os.path.exists(seen[0])
        assert dict(seg.callbacks_)["checkpoint"].dirname_ is None

    def test_named_dirname_is_kept(self, blobs, tmp_path):
        tiny(callbacks__checkpoint__dirname=str(tmp_path / "cp")).fit(*blobs)
        assert {"params.pt", "history.json"} <= set(os.listdir(tmp_path / "cp"))

    def test_best_epoch_weights_restored(self, blobs, tmp_path):
        X, y = blobs
        seg = tiny(max_epochs=4, lr=0.05, callbacks__checkpoint__dirname=str(tmp_path))
        snapshots = {}

        class Remember(IoUScoring):
            def on_epoch_end(self, net, **kwargs):
                super().on_epoch_end(net, **kwargs)
                snapshots[len(net.history)] = {
                    k: v.clone() for k, v in net.module_.state_dict().items()
                }

        seg.set_params(callbacks__iou=Remember())
        seg.fit(X, y)
        best = [i + 1 for i, b in enumerate(seg.history[:, "valid_iou_best"]) if b][-1]
        state = seg.module_.state_dict()
        for k, v in snapshots[best].items():
            torch.testing.assert_close(state[k], v)
        assert len(seg.history) == 4  # history keeps every epoch

    def test_a_continued_fit_that_never_beats_the_earlier_best_keeps_its_start(self, blobs):
        """warm_start: the best score so far counts the earlier fit's epochs, so the
        weights the fit starts from stand as the best until an epoch beats them."""
        seg = tiny(max_epochs=1).fit(*blobs)
        start = {k: v.clone() for k, v in seg.module_.state_dict().items()}
        never = SegmentationCheckpoint(monitor=lambda net: False)  # no epoch is better
        seg.set_params(warm_start=True, callbacks__checkpoint=never, lr=1.0)
        seg.fit(*blobs)
        assert len(seg.history) == 2 and not seg.history[-1, "event_cp"]
        for k, v in seg.module_.state_dict().items():
            torch.testing.assert_close(v, start[k])

    def test_atomic_write_leaves_no_partial_file(self, blobs, tmp_path, monkeypatch):
        seg = tiny(callbacks__checkpoint__dirname=str(tmp_path), max_epochs=1)
        seg.fit(*blobs)
        before = (tmp_path / "params.pt").read_bytes()

        def broken(**kwargs):
            target = next(v for k, v in kwargs.items() if k.startswith("f_"))
            with open(target, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError("disk full")

        monkeypatch.setattr(seg, "save_params", broken)
        with pytest.raises(OSError):
            dict(seg.callbacks_)["checkpoint"].save_model(seg)
        assert (tmp_path / "params.pt").read_bytes() == before
        assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]

    def test_without_validation_saves_latest(self, blobs):
        seg = tiny(train_split=None, max_epochs=2).fit(*blobs)
        assert all(seg.history[:, "event_cp"])
        assert "valid_iou" not in seg.history[-1]


def test_make_blobs_helper_is_deterministic():
    a, _ = make_blobs(2, seed=1)
    b, _ = make_blobs(2, seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


class TestLivePlot:
    def test_headless_writes_a_png_each_epoch_with_the_panels(self, blobs, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        written = []
        original = LivePlot.on_epoch_end

        def spy(self, net, **kwargs):
            original(self, net, **kwargs)
            written.append((tmp_path / "live.png").stat().st_size)

        monkeypatch.setattr(LivePlot, "on_epoch_end", spy)
        seg = tiny(callbacks=[("live", LivePlot(n_images=2))], max_epochs=2).fit(*blobs)
        assert len(written) == 2 and all(size > 1000 for size in written)
        png = tmp_path / "live.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        fig = dict(seg.callbacks_)["live"].figure_
        titles = [ax.get_title() for ax in fig.axes]
        # the loss panel (with its IoU twin), then image / truth / prediction per image
        assert titles.count("truth") == 2 and titles.count("prediction") == 2
        assert fig.axes[0].get_xlabel() == "epoch"
        assert len(fig.axes) == 2 + 2 * 3

    def test_every_and_explicit_path(self, blobs, tmp_path):
        path = tmp_path / "progress.png"
        calls = []

        class Counting(LivePlot):
            def on_epoch_end(self, net, **kwargs):
                before = path.stat().st_mtime_ns if path.exists() else None
                super().on_epoch_end(net, **kwargs)
                after = path.stat().st_mtime_ns if path.exists() else None
                calls.append(before != after)

        tiny(callbacks=[("live", Counting(path=str(path), every=2))], max_epochs=3).fit(*blobs)
        assert calls == [False, True, True]  # epoch 2, and the last one

    def test_bad_settings(self, blobs):
        with pytest.raises(ValueError, match="n_images >= 1"):
            tiny(callbacks=[("live", LivePlot(n_images=0))]).fit(*blobs)

    def test_in_a_notebook_updates_one_display(self, blobs, monkeypatch, tmp_path):
        import IPython.display

        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr("skunet.callbacks.logging.in_notebook", lambda: True)
        shown = []

        class Handle:
            def update(self, obj):
                shown.append(("update", obj))

        def display(obj, display_id=None):
            shown.append(("display", obj))
            return Handle()

        monkeypatch.setattr(IPython.display, "display", display)
        tiny(callbacks=[("live", LivePlot())], max_epochs=3).fit(*blobs)
        assert [kind for kind, _ in shown] == ["display", "update", "update"]
        assert all(obj.data[:4] == b"\x89PNG" for _, obj in shown)
        assert not (tmp_path / "live.png").exists()  # no file unless a path is given


def test_progress_bar_is_on_by_default_in_notebooks(monkeypatch):
    monkeypatch.setattr("skunet.estimator.in_notebook", lambda: True)
    assert "progress_bar" in dict(tiny(verbose=1).initialize().callbacks_)
    assert "progress_bar" not in dict(tiny(verbose=0).initialize().callbacks_)
    monkeypatch.setattr("skunet.estimator.in_notebook", lambda: False)
    assert "progress_bar" not in dict(tiny(verbose=1).initialize().callbacks_)


def test_progress_bar_falls_back_to_text_without_ipywidgets(monkeypatch):
    import skunet.progress

    monkeypatch.setattr(skunet.progress, "in_notebook", lambda: True)
    monkeypatch.setattr(skunet.progress, "find_spec", lambda name: None)
    assert not ProgressBar()._use_notebook()
    monkeypatch.setattr(skunet.progress, "find_spec", lambda name: object())
    assert ProgressBar()._use_notebook()
    assert not ProgressBar(detect_notebook=False)._use_notebook()


class TestMetricScoring:
    def test_records_a_validation_metric_every_few_epochs(self):
        from torch.utils.data import Subset

        from skunet.callbacks import MetricScoring
        from skunet.evaluation import evaluate

        X, y = make_blobs(6)
        cells = [(m > 0).astype(np.uint8) for m in y]

        def split(dataset, y=None, **kwargs):
            return Subset(dataset, [0, 1, 2, 3]), Subset(dataset, [4, 5])

        seg = tiny(
            max_epochs=3,
            train_split=split,
            callbacks=[("v_rand", MetricScoring("v_rand", every=2))],
            callbacks__checkpoint__monitor="valid_v_rand_best",
            callbacks__checkpoint__load_best=False,
        ).fit(X, cells)
        scores = seg.history[:, "valid_v_rand"]
        assert np.isnan(scores[0]) and not np.isnan(scores[1]) and not np.isnan(scores[2])
        assert seg.history[0, "valid_v_rand_best"] is False
        assert seg.history[1, "valid_v_rand_best"] is True
        # the last epoch's figure is the metric of the final weights on the held-out images
        assert scores[2] == pytest.approx(evaluate(seg, X[4:], cells[4:], ["v_rand"])["v_rand"])

    def test_bad_settings(self, blobs):
        from skunet.callbacks import MetricScoring

        with pytest.raises(ValueError, match="unknown metric 'vrand'"):
            tiny(callbacks=[("m", MetricScoring("vrand"))]).fit(*blobs)
        with pytest.raises(ValueError, match="every must be an integer >= 1"):
            tiny(callbacks=[("m", MetricScoring(every=0))]).fit(*blobs)


class TestTimeLimit:
    def test_stops_before_another_epoch_would_pass_the_limit(self, blobs, monkeypatch):
        import skunet.callbacks.training as training

        clock = iter(range(0, 1000, 10))  # each reading 10 s later: epochs of 10 s
        monkeypatch.setattr(training.time, "monotonic", lambda: next(clock))
        limit = TimeLimit(minutes=0.5, sink=None)  # 30 s: three epochs would end at 30
        seg = tiny(max_epochs=8, callbacks=[("time_limit", limit)]).fit(*blobs)
        # begin at 0; epochs end at 10, 20: 20 + 10 = 30 is not past 30; at 30 it stops
        assert len(seg.history) == limit.stopped_epoch_ == 3
        assert seg.initialized_ and seg.predict(blobs[0][:1])[0].shape == blobs[1][0].shape

    def test_runs_every_epoch_within_the_limit(self, blobs):
        limit = TimeLimit(minutes=60)
        seg = tiny(max_epochs=3, callbacks=[("time_limit", limit)]).fit(*blobs)
        assert len(seg.history) == 3 and limit.stopped_epoch_ is None

    @pytest.mark.parametrize("continuing", ["warm_start", "partial_fit"])
    def test_a_limit_set_on_a_fitted_model_binds_its_next_training(self, blobs, continuing):
        """set_params(callbacks=...) after a fit: a warm start (fine-tuning a loaded
        model) and partial_fit train with the new callbacks, not the ones of the fit."""
        seg = tiny(max_epochs=2, callbacks=[("time_limit", TimeLimit(60))]).fit(*blobs)
        seg.set_params(callbacks=[("time_limit", TimeLimit(1e-9, sink=None))], max_epochs=3)
        if continuing == "warm_start":
            seg.set_params(warm_start=True).fit(*blobs)
        else:
            seg.partial_fit(*blobs)
        assert len(seg.history) == 2 + 1  # stopped after the first epoch of the new limit
        assert dict(seg.callbacks_)["time_limit"].minutes == 1e-9

    @pytest.mark.parametrize("continuing", ["warm_start", "partial_fit"])
    def test_a_callback_set_to_none_on_a_fitted_model_is_left_out_and_can_come_back(
        self, blobs, continuing
    ):
        """Fine-tuning a fitted (or loaded) model without one of its callbacks: skorch
        leaves None among the built callbacks, which the next epoch would call."""
        from skorch.callbacks import PrintLog

        seg = tiny(max_epochs=1, train_split=None).fit(*blobs)
        seg.set_params(callbacks__lr_scheduler=None, callbacks__print_log=None)
        if continuing == "warm_start":
            seg.set_params(warm_start=True).fit(*blobs)
        else:
            seg.partial_fit(*blobs)
        assert len(seg.history) == 2
        assert {"lr_scheduler", "print_log"}.isdisjoint(dict(seg.callbacks_))
        logged = []
        seg.set_params(callbacks__print_log=PrintLog(sink=logged.append))
        seg.partial_fit(*blobs)
        assert len(seg.history) == 3 and logged  # the new log is built and called

    def test_replacing_a_callback_the_model_lacks_names_those_it_has(self, blobs):
        seg = tiny(max_epochs=1).fit(*blobs)  # no time_limit among its callbacks
        for key in ("callbacks__time_limit", "callbacks__time_limit__minutes"):
            with pytest.raises(ValueError, match=f"{key}: .*no callback named 'time_limit'"):
                seg.set_params(**{key: 3})
        seg.set_params(callbacks__print_log=None)  # a callback it has: replaced as before
        assert dict(seg.callbacks_)["print_log"] is None

    def test_first_epoch_always_runs_and_says_why_it_stopped(self, blobs):
        messages = []
        limit = TimeLimit(minutes=1e-9, sink=messages.append)
        seg = tiny(max_epochs=3, callbacks=[("time_limit", limit)]).fit(*blobs)
        assert len(seg.history) == 1
        assert messages == [
            "Stopping after epoch 1: another epoch would end past the time limit of 1e-09 minutes."
        ]

    def test_a_routed_bad_limit_is_named_before_any_mask_is_converted(self, blobs, monkeypatch):
        import skunet.fitting.training_set

        def spy(*args, **kwargs):
            raise AssertionError("a mask was converted before the parameters were checked")

        monkeypatch.setattr(skunet.fitting.training_set, "mask_classes", spy)
        seg = tiny(callbacks=[("time_limit", TimeLimit(5))], callbacks__time_limit__minutes=-1)
        with pytest.raises(
            ValueError, match=r"TimeLimit: minutes .* got -1 \(callbacks__time_limit__minutes\)"
        ):
            seg.fit(*blobs)
        from skunet.callbacks import MetricScoring

        seg = tiny(callbacks=[MetricScoring(every=0)])  # named by its class, as skorch does
        with pytest.raises(ValueError, match=r"\(callbacks__MetricScoring__every\)"):
            seg.fit(*blobs)

    @pytest.mark.parametrize(
        "minutes, error", [(0, ValueError), (-1, ValueError), ("5", TypeError)]
    )
    def test_bad_limit_named_before_training(self, blobs, minutes, error):
        seg = tiny(callbacks=[("time_limit", TimeLimit(minutes))])
        with pytest.raises(error, match="TimeLimit: minutes"):
            seg.fit(*blobs)
        assert not seg.history  # not a single epoch ran


class TestWeightAverage:
    def averaged(self, blobs, **kwargs):
        from skunet.callbacks import WeightAverage

        average = WeightAverage(**{"decay": 0.5, "start": 3, **kwargs})
        return tiny(max_epochs=4, callbacks__weight_average=average).fit(*blobs)

    def test_off_by_default_and_epochs_before_start_unchanged(self, blobs):
        plain = tiny(max_epochs=4).fit(*blobs)
        assert "weight_average" not in dict(plain.callbacks_)
        seg = self.averaged(blobs)
        ours, theirs = seg.history[:, "valid_loss"], plain.history[:, "valid_loss"]
        assert ours[:2] == pytest.approx(theirs[:2], abs=1e-7)  # the same two epochs
        assert ours[2:] != pytest.approx(theirs[2:], abs=1e-7)  # validated: the average

    def test_fit_returns_the_average(self, blobs):
        seg = self.averaged(blobs, start=1, decay=0.99)
        average = dict(seg.callbacks_)["weight_average"].average_.module.state_dict()
        own = seg.module_.state_dict()
        floats = [k for k, v in own.items() if v.is_floating_point()]
        assert all(torch.equal(own[k], average[k]) for k in floats)
        # an average that moved 1 % a batch is far from where training went
        plain = tiny(max_epochs=4).fit(*blobs).module_.state_dict()
        assert not torch.allclose(own[floats[0]], plain[floats[0]])

    def test_a_fraction_of_max_epochs(self, blobs):
        from skunet.callbacks import WeightAverage

        seg = tiny(max_epochs=4)
        assert WeightAverage(start=0.5).first_epoch(seg) == 3
        assert WeightAverage(start=0.0).first_epoch(seg) == 1
        assert WeightAverage(start=2).first_epoch(seg) == 2

    @pytest.mark.parametrize(
        "param, value", [("decay", 1.0), ("decay", 0), ("start", 1.5), ("start", -1)]
    )
    def test_bad_values_are_named_before_training(self, blobs, param, value):
        from skunet.callbacks import WeightAverage

        seg = tiny(callbacks__weight_average=WeightAverage(**{param: value}))
        with pytest.raises(ValueError, match=f"callbacks__weight_average__{param}"):
            seg.fit(*blobs)
        assert not getattr(seg, "initialized_", False)  # refused before any training

    def test_clone_keeps_it(self):
        from sklearn.base import clone

        from skunet.callbacks import WeightAverage

        seg = tiny(callbacks__weight_average=WeightAverage(decay=0.9, start=2))
        copy = clone(seg)
        copy.initialize()
        average = dict(copy.callbacks_)["weight_average"]
        assert isinstance(average, WeightAverage) and (average.decay, average.start) == (0.9, 2)
