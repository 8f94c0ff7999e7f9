"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from skorch.callbacks import Callback

from conftest import make_blobs, tiny

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from skorch.callbacks import Callback
    from conftest import make_blobs, tiny

    class HangInEpoch4(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            if training and len(net.history) == 4:
                open({ready!r}, "w").write("in epoch 4")
                time.sleep(600)  # the parent kills us here, mid-epoch

    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    seg = tiny(max_epochs=6, callbacks__checkpoint__dirname={cp!r},
               callbacks__checkpoint__resume=True, callbacks=[("hang", HangInEpoch4())])
    seg.fit(X, y)
    """
)


def run_and_kill(tmp_path):
    cp, ready = tmp_path / "cp", tmp_path / "ready"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), cp=str(cp), ready=str(ready)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return cp


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_number_of_epochs(tmp_path):
    cp = run_and_kill(tmp_path)
    assert not [p for p in os.listdir(cp) if ".tmp" in p]  # no half-written files
    last = torch.load(cp / "last.pt", weights_only=True)  # loadable, no unpickling
    before = json.loads(last["history"])
    assert len(before) == 3  # epochs 1-3 finished; epoch 4 was killed mid-way
    assert (cp / "params.pt").exists()

    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    seg = tiny(
        max_epochs=6, callbacks__checkpoint__dirname=str(cp), callbacks__checkpoint__resume=True
    )
    seg.fit(X, y)
    assert len(seg.history) == 6
    assert seg.history[:3, "train_loss"] == [row["train_loss"] for row in before]
    after = json.loads(torch.load(cp / "last.pt", weights_only=True)["history"])
    assert len(after) == 6

    # resuming a finished run trains nothing more
    again = tiny(
        max_epochs=6, callbacks__checkpoint__dirname=str(cp), callbacks__checkpoint__resume=True
    ).fit(X, y)
    assert len(again.history) == 6


def test_resume_continues_lr_cycle_and_best_score(tmp_path):
    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    full = tiny(max_epochs=4).fit(X, y)
    # two epochs, then a "new process" resuming from the directory
    first = tiny(max_epochs=2, callbacks__checkpoint__dirname=str(tmp_path))
    first.fit(X, y)
    second = tiny(
        max_epochs=4,
        callbacks__checkpoint__dirname=str(tmp_path),
        callbacks__checkpoint__resume=True,
    )
    second.fit(X, y)
    lrs = [[b["event_lr"] for b in e if "event_lr" in b] for e in second.history[:, "batches"]]
    ref = [[b["event_lr"] for b in e if "event_lr" in b] for e in full.history[:, "batches"]]
    assert lrs[2:] != ref[:2]  # the cycle does not restart
    assert len(second.history) == 4


def test_resume_continues_a_one_cycle_schedule_exactly(tmp_path):
    from skunet.callbacks import OneCycleLRScheduler

    class StopAfter2(Callback):
        def on_epoch_begin(self, net, **kwargs):
            if len(net.history) == 3:
                raise KeyboardInterrupt  # as if the process died before epoch 3

    X, y = make_blobs(6, shapes=[(48, 48), (40, 56)])
    params = dict(max_epochs=4, batch_size=2, callbacks__lr_scheduler=OneCycleLRScheduler())
    full = tiny(**params).fit(X, y)
    cp = dict(callbacks__checkpoint__dirname=str(tmp_path), callbacks__checkpoint__resume=True)
    tiny(**params, **cp, callbacks=[("stop", StopAfter2())]).fit(X, y)
    second = tiny(**params, **cp).fit(X, y)
    lrs = [b["event_lr"] for e in second.history[2:, "batches"] for b in e if "event_lr" in b]
    ref = [b["event_lr"] for e in full.history[2:, "batches"] for b in e if "event_lr" in b]
    assert len(second.history) == 4 and len(ref) == 2 * 2
    assert lrs == pytest.approx(ref)  # the same cycle, picked up after epoch 2


def test_resume_needs_named_directory(blobs):
    with pytest.raises(ValueError, match="resume=True needs a named checkpoint dirname"):
        tiny(callbacks__checkpoint__resume=True).fit(*blobs)


class TestNonFiniteLoss:
    def test_nan_in_first_epoch_is_a_clear_error(self, blobs):
        with pytest.raises(FloatingPointError, match=r"loss became nan in epoch \d, batch 1, "):
            tiny(max_epochs=3, lr=1e30).fit(*blobs)

    def test_nan_later_stops_and_restores_best_epoch(self, blobs):
        snapshots = {}

        class Diverge(Callback):
            def on_epoch_end(self, net, **kwargs):
                snapshots[len(net.history)] = {
                    k: v.clone() for k, v in net.module_.state_dict().items()
                }

            def on_batch_begin(self, net, training=False, **kwargs):
                if training and len(net.history) == 3:
                    with torch.no_grad():
                        for p in net.module_.parameters():
                            p.fill_(float("nan"))

        seg = tiny(max_epochs=5, callbacks=[("diverge", Diverge())])
        with pytest.warns(RuntimeWarning, match=r"loss became nan in epoch 3, batch 1: training"):
            seg.fit(*blobs)
        assert len(seg.history) == 3
        best = [i + 1 for i, b in enumerate(seg.history[:2, "valid_iou_best"]) if b][-1]
        for k, v in seg.module_.state_dict().items():
            torch.testing.assert_close(v, snapshots[best][k])
