"""Compute efficiency for ``speed.py``: this machine's matmul peak, a bare U-Net's
achieved GFLOP/s, and each task preset's training throughput."""

from __future__ import annotations

import time

import numpy as np
import torch
from skimage.measure import label
from torch.utils.flop_counter import FlopCounterMode

from skunet.models import UNet
from skunet.presets import segmenter

# (task, recipe): the synthetic data it trains on, shaped like the task's own images
PRESETS = {
    ("nuclei", "unet"): {"n": 12, "size": 320, "rgb": False, "labels": "instances"},
    ("blood-cells", "fast"): {"n": 48, "size": 112, "rgb": True, "labels": "classes"},
    ("em", "fast"): {"n": 4, "size": 512, "rgb": False, "labels": "membranes"},
}


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(timed(torch.mm, a, b)[0] for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def unet_gflops(channels_last: bool, train: bool, repeats: int = 3) -> tuple[float, float]:
    torch.manual_seed(0)
    model = UNet(1, 1, depth=4, base_channels=16)
    x = torch.randn(4, 1, 256, 256)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        if train:
            model.zero_grad()
            model(x).sum().backward()
        else:
            with torch.inference_mode():
                model(x)

    model.train(train)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    step()
    best = min(timed(step)[0] for _ in range(repeats))
    return flops / best / 1e9, flops


def task_images(n: int, size: int, rgb: bool, labels: str, seed: int = 0):
    """Disks on a dark background as ``labels`` asks: instance labels, three classes
    (a nucleus inside each cell) or EM-like 0 / 255 masks (255 inside the cells)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    X, y = [], []
    for _ in range(n):
        cells = np.zeros((size, size), np.uint8)
        nuclei = np.zeros((size, size), bool)
        for cy, cx in rng.integers(10, size - 10, (max(1, size // 24), 2)):
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            radius2 = int(rng.integers(25, 150))
            cells[r2 < radius2] = 1
            nuclei |= r2 < radius2 // 3
        img = cells * 120 + nuclei * 80 + rng.normal(30, 15, (size, size))
        img = np.clip(img, 0, 255).astype(np.uint8)
        X.append(np.stack([img, img // 2, 255 - img], -1) if rgb else img)
        if labels == "instances":
            y.append(label(cells).astype(np.int32))
        elif labels == "classes":
            y.append((cells + nuclei).astype(np.uint8))
        else:
            y.append((cells * 255).astype(np.uint8))
    return X, y


def training_windows(epoch) -> int:
    """The training windows of one epoch of a skorch history."""
    return sum(b.get("train_batch_size", 0) for b in epoch["batches"])


def preset_throughput(task: str, recipe: str, epochs: int = 2) -> dict:
    """Training windows per second of a preset (its own network, windows, batch, loss,
    augmentation and callbacks; its last epoch, validation included) and the GFLOP/s
    of its network's training steps at that rate."""
    data = PRESETS[(task, recipe)]
    X, y = task_images(**data)
    seg = segmenter(task, recipe, max_epochs=epochs, verbose=0, random_state=0).fit(X, y)
    last = seg.history[-1]
    per_s = training_windows(last) / last["dur"]
    # FLOPs of one training step (forward and backward) on a batch of the preset's windows
    side = seg.geometry_.input_length(seg.patch_size)
    x = torch.randn(seg.batch_size, 3 if data["rgb"] else 1, side, side)
    seg.module_.train()
    with FlopCounterMode(display=False) as counter:
        seg.module_(x).float().sum().backward()
    flops_per_window = counter.get_total_flops() / seg.batch_size
    return {
        "images": f"{data['n']} synthetic {data['size']}^2 {'RGB' if data['rgb'] else 'gray'}",
        "window": side,
        "batch_size": seg.batch_size,
        "autocast": seg.autocast,
        "windows_per_s": per_s,
        "gflop_per_window": flops_per_window / 1e9,
        "gflops": per_s * flops_per_window / 1e9,
    }
