"""Training-step time of the blood-cell U-Net in float32 and under bfloat16 autocast.

    python benchmarks/mixed_precision.py [--repeats 20] [--compile]

One Adam step (forward, cross-entropy, backward, update) of the ``fast`` blood-cell
network (depth 4, 16 channels, batch norm, RGB -> 3 classes) on a batch of 8 windows of
128 x 128, in NCHW and channels-last layouts, with and without
``torch.autocast("cpu", torch.bfloat16)`` as ``UNetSegmenter(autocast=...)`` runs it.
Median and min-max of ``--repeats`` steps after 3 warm-up steps, the four settings
interleaved. Writes ``benchmarks/results/mixed_precision.json``, one record per CPU
instruction set that PyTorch uses (``torch.backends.cpu.get_cpu_capability()``: AVX512,
AVX2 ...), since that decides whether channels-last and bfloat16 pay.

``--compile`` adds the channels-last network under ``torch.compile`` (what skorch's
``compile=True`` does to the module) in both precisions: the seconds its first steps
take (compiling), its step time, and the steps a fit needs before compiling pays back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _record import RESULTS, load, update

from skunet.mixed_precision import autocast_context, native_bfloat16
from skunet.models import UNet

SETTINGS = [(cl, bf) for cl in (False, True) for bf in (False, True)]


def compiled(x, target, repeats: int, eager_ms: dict) -> dict:
    """The channels-last step under ``torch.compile``, in float32 and bfloat16."""
    out = {}
    x = x.contiguous(memory_format=torch.channels_last)
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = UNet(in_channels=3, out_channels=3, depth=4, base_channels=16, batch_norm=True)
        model = torch.compile(model.to(memory_format=torch.channels_last))
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, optimizer=optimizer, dtype=dtype):
            optimizer.zero_grad()
            with autocast_context("cpu", dtype if dtype == "bfloat16" else False):
                logits = model(x)
            torch.nn.functional.cross_entropy(logits.float(), target).backward()
            optimizer.step()

        start = time.perf_counter()
        for _ in range(3):
            step()
        first = time.perf_counter() - start
        ms = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            ms.append(1000 * (time.perf_counter() - start))
        eager = eager_ms[f"channels_last {dtype}"]["median"]
        gain = eager - statistics.median(ms)
        out[dtype] = {
            "first_3_steps_seconds": first,
            "ms": {"median": statistics.median(ms), "min": min(ms), "max": max(ms)},
            "eager_ms": eager,
            "steps_to_pay_back": first / (gain / 1000) if gain > 0 else None,
        }
        print(
            f"compiled channels_last {dtype}: first 3 steps {first:.0f} s, then "
            f"{statistics.median(ms):.0f} ms/step (eager {eager:.0f}); pays back after "
            f"{out[dtype]['steps_to_pay_back'] or float('inf'):.0f} steps"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(8, 3, 128, 128)
    target = torch.randint(0, 3, (8, 128, 128))
    steps, times = {}, {s: [] for s in SETTINGS}
    for channels_last, bf16 in SETTINGS:
        model = UNet(in_channels=3, out_channels=3, depth=4, base_channels=16, batch_norm=True)
        xx = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, xx=xx, optimizer=optimizer, bf16=bf16):
            optimizer.zero_grad()
            with autocast_context("cpu", "bfloat16" if bf16 else False):
                logits = model(xx)
            torch.nn.functional.cross_entropy(logits.float(), target).backward()
            optimizer.step()

        for _ in range(3):
            step()
        steps[(channels_last, bf16)] = step
    for _ in range(args.repeats):
        for setting in SETTINGS:
            start = time.perf_counter()
            steps[setting]()
            times[setting].append(1000 * (time.perf_counter() - start))
    figures = {"native_bfloat16": native_bfloat16("cpu"), "batch": [8, 3, 128, 128], "ms": {}}
    for (channels_last, bf16), ms in times.items():
        key = f"{'channels_last' if channels_last else 'nchw'} {'bfloat16' if bf16 else 'float32'}"
        figures["ms"][key] = {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}
        print(f"{key:24s} {statistics.median(ms):6.0f} ms/step ({min(ms):.0f}-{max(ms):.0f})")
    ms = figures["ms"]
    figures["speedup_channels_last"] = (
        ms["channels_last float32"]["median"] / ms["channels_last bfloat16"]["median"]
    )
    print(f"bfloat16 / float32 (channels-last): {figures['speedup_channels_last']:.2f}x faster")
    figures["speedup_channels_last_float32"] = (
        ms["nchw float32"]["median"] / ms["channels_last float32"]["median"]
    )
    print(f"channels-last / NCHW (float32): {figures['speedup_channels_last_float32']:.2f}x faster")
    if args.compile:
        figures["compiled"] = compiled(x, target, args.repeats, ms)
    path = RESULTS / "mixed_precision.json"
    records = load(path)
    if "command" in records:  # a file from before records were kept per instruction set
        path.write_text(json.dumps({"AVX512": records}, indent=2) + "\n")
    update(path, torch.backends.cpu.get_cpu_capability(), figures)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
