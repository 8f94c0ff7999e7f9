"""Helpers every benchmark uses to record its figures with how they were made."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import skunet.callbacks
import skunet.losses
from skunet.augment import Augment
from skunet.instances import LargestObject, largest_object

RESULTS = Path(__file__).parent / "results"


# the variables that make oneDNN (convolutions, bfloat16), MKL (float32 matmul) and ATen's
# own kernels use AVX2 only: an AVX-512 machine's figures for AVX2 machines (same cores,
# same clock); `machine()` and `command()` name them in the record when they are set
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def instruction_caps() -> dict[str, str]:
    """The :data:`ISA_CAPS` set in this run's environment."""
    return {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}


def machine() -> dict:
    """What ran the benchmark: CPU and its vector instructions, cores, torch threads, GPU."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    names = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.splitlines()
        if line.startswith("model name")
    ]
    instructions = _instruction_set(set(cpuinfo.split())) if cpuinfo else "unknown"
    capped = instruction_caps()
    if capped:
        instructions += " capped to " + "/".join(sorted({v.upper() for v in capped.values()}))
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(),
        "instructions": instructions,
        **({"instruction_caps": capped} if capped else {}),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _instruction_set(flags: set[str]) -> str:
    """The CPU's widest vector instructions that matter for torch here: training and
    prediction in bfloat16 are about 2x faster with native AVX-512 BF16 than on AVX2."""
    for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return name
    return "no AVX2"


def command() -> str:
    """How this run was started, as run from the repository's root whatever the working
    folder (paths that exist, or whose folder does, are rewritten relative to the root),
    with the instruction caps that were set."""
    root = RESULTS.parent.parent.resolve()

    def from_root(arg: str) -> str:
        flag, eq, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        if value and (Path(value).exists() or ("/" in value and Path(value).parent.is_dir())):
            value = os.path.relpath(Path(value).resolve(), root)
        return flag + eq + value

    caps = [f"{name}={value}" for name, value in instruction_caps().items()]
    return " ".join([*caps, "python", shlex.join(map(from_root, sys.argv))])


def record(figures: dict) -> dict:
    """``figures`` with the command that made them, the date and the machine."""
    return {
        "command": command(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        **figures,
    }


def write(name: str, figures: dict) -> Path:
    """Write ``results/<name>.json`` with the command, date and machine."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record(figures), indent=2) + "\n")
    return path


def update(path: Path, key: str, figures: dict) -> dict:
    """Store ``figures`` (with command, date, machine) under ``key`` in the JSON file at
    ``path``, keeping the other keys' records; returns the whole file's content."""
    results = load(path)
    results[key] = record(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def load(path: Path) -> dict:
    """The records in ``path``, or none."""
    return json.loads(path.read_text()) if path.exists() else {}


def add_common_arguments(parser: argparse.ArgumentParser, data: Path, results: Path) -> None:
    """The options every task benchmark takes: data, device, epochs, results file, table,
    a time limit for each training."""
    parser.add_argument("--data", type=Path, default=data, help="dataset folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, help="override the recipe's max_epochs")
    parser.add_argument("--out", type=Path, default=results, help="results file")
    parser.add_argument("--table", action="store_true", help="print the docs table and exit")
    parser.add_argument(
        "--minutes", type=float, help="stop each training before this wall time (TimeLimit)"
    )


def add_trial_arguments(parser: argparse.ArgumentParser, default_name: str) -> None:
    """The options of a benchmark that trains trials of a recipe: ``--set`` overrides,
    ``--name`` of the record (default: ``default_name``), ``--verbose``."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="PARAM=EXPR", help="override a parameter"
    )
    parser.add_argument("--name", help=f"the record's key (default: {default_name})")
    parser.add_argument("--verbose", type=int, default=0, help="1: skorch's epoch log")


def with_time_limit(seg, minutes: float | None):
    """``seg`` with a ``TimeLimit(minutes)`` callback, if ``minutes``; it replaces a
    ``time_limit`` the configuration already has (skorch refuses two of one name)."""
    if minutes:
        own = [(name, cb) for name, cb in seg.callbacks or [] if name != "time_limit"]
        seg.set_params(callbacks=[*own, ("time_limit", skunet.callbacks.TimeLimit(minutes))])
    return seg


def spread(values, centre: str = "mean") -> dict:
    """The ``centre`` (``"mean"`` of per-fold figures, or ``"median"`` of repeated
    timings), min and max of ``values``."""
    values = list(values)
    middle = {"mean": statistics.mean, "median": statistics.median}[centre]
    return {centre: middle(values), "min": min(values), "max": max(values)}


def fit_seconds(seg, X: list, y: list, train) -> float:
    """Fit ``seg`` on the images ``train`` indexes; the wall time in seconds."""
    start = time.perf_counter()
    seg.fit([X[i] for i in train], [y[i] for i in train])
    return round(time.perf_counter() - start, 1)


def device_of(rec: dict) -> str:
    """The device a record was made on, for tables."""
    return rec["machine"]["gpu"] or f"{rec['machine']['cores']} CPU cores"


# what a benchmark's --set expressions may name
NAMESPACE = {
    "torch": torch,
    "largest_object": largest_object,
    "LargestObject": LargestObject,
    "Augment": Augment,
    **{n: getattr(skunet.losses, n) for n in dir(skunet.losses) if n[0].isupper()},
    **{n: getattr(skunet.callbacks, n) for n in skunet.callbacks.__all__},
}


def parse_settings(settings: list[str]) -> dict:
    """``["param=expression", ...]`` as parameters; an expression that is not Python
    (a bare word) is taken as a string."""
    params = {}
    for setting in settings:
        name, sep, text = setting.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {setting!r}: expected param=expression")
        try:
            params[name] = eval(text, dict(NAMESPACE))  # the user's own command line
        except (NameError, SyntaxError):
            params[name] = text
    return params
