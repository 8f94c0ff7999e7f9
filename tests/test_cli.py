import json
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "skunet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
    )


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "demo" in out.stdout
    assert run("demo", "--help").returncode == 0
    assert run("--version").stdout.startswith("skunet ")


def test_bad_input_exits_2_with_one_line():
    out = run("demo", "--epochs", "0")
    assert out.returncode == 2
    assert "--epochs must be at least 1" in out.stderr
    out = run("nosuchcommand")
    assert out.returncode == 2


@pytest.mark.slow
def test_demo_reaches_held_out_iou(tmp_path):
    """The README's first command: the full demo, as a newcomer runs it."""
    out = run("demo", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["held_out_iou"] >= 0.7, metrics
    picture = tmp_path / "demo" / "predictions.png"
    assert picture.stat().st_size > 10_000
    assert str(picture) in out.stdout
    assert "%|" in out.stderr  # progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
