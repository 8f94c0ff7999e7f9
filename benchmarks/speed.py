"""Speed and scale of skunet against a plain PyTorch loop and MONAI, in one run.

    python benchmarks/speed.py [--repeats 3] [--quick]

Measures, each as a median over ``--repeats`` runs with the min-max spread, ratios taken
from runs interleaved in this one process so that machine noise cancels:

- fit throughput, ``UNetSegmenter.fit`` / a hand-written loop (same U-Net, patches,
  batch size, optimizer, seed);
- tiled prediction throughput, skunet / MONAI ``sliding_window_inference`` (same model,
  roi 256, overlap 0.25, Gaussian blending, 4 tiles a batch), with the largest absolute
  difference of the two probability maps under identical settings;
- peak resident memory predicting one 8192 x 8192 image (a child process);
- prediction time for 512^2 ... 4096^2 images and fit time per epoch against the number of
  images (how cost grows);
- achieved GFLOP/s of the U-Net (FlopCounterMode) against this machine's fp32 matmul;
- for each task preset (its own network, windows, batch, loss, augmentation, callbacks,
  on synthetic images shaped like the task's), training windows per second in its last
  epoch and the GFLOP/s of its network at that rate, as a fraction of the matmul in the
  precision it trains in (float32, or bfloat16 where ``autocast="auto"`` picks it).

Writes ``benchmarks/results/speed.json`` and prints the markdown table for docs/guide/speed.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _record import RESULTS, spread, write
from _throughput import PRESETS, matmul_gflops, preset_throughput, timed, unet_gflops
from torch.utils.data import DataLoader, Dataset

from skunet import UNetSegmenter
from skunet.mixed_precision import autocast_dtype, native_bfloat16
from skunet.models import UNet

NET = {"module__depth": 4, "module__base_channels": 16}
PATCH, PAD, BATCH = 256, 16, 8


def images(n: int, size: int = 320, seed: int = 0) -> tuple[list, list]:
    """Bright noisy disks on a dark background, as uint8 images with their masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    X, y = [], []
    for _ in range(n):
        mask = np.zeros((size, size), np.uint8)
        for cy, cx in rng.integers(10, size - 10, (25, 2)):
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(25, 150)] = 1
        img = mask * 150 + rng.normal(30, 15, (size, size))
        X.append(np.clip(img, 0, 255).astype(np.uint8))
        y.append(mask)
    return X, y


# ----------------------------------------------------------------------------- fit
class _Crops(Dataset):
    """The hand-written loop's data: a random crop, mirrored border, random flips."""

    def __init__(self, X, y, per_image):
        self.X = [x.astype(np.float32) / 255 for x in X]
        self.y = y
        self.per_image = per_image

    def __len__(self):
        return len(self.X) * self.per_image

    def __getitem__(self, i):
        x, y = self.X[i % len(self.X)], self.y[i % len(self.X)]
        top = int(torch.randint(x.shape[0] - PATCH + 1, ()))
        left = int(torch.randint(x.shape[1] - PATCH + 1, ()))
        xc = np.pad(x[top : top + PATCH, left : left + PATCH], PAD, mode="reflect")
        yc = np.pad(y[top : top + PATCH, left : left + PATCH].astype(np.int64), PAD, mode="reflect")
        if torch.rand(()) < 0.5:
            xc, yc = xc[:, ::-1], yc[:, ::-1]
        return torch.from_numpy(xc.copy())[None], torch.from_numpy(yc.copy())


def plain_fit(X, y, epochs, per_image) -> float:
    torch.manual_seed(0)
    model = UNet(1, 1, depth=4, base_channels=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(_Crops(X, y, per_image), batch_size=BATCH, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            out = model(xb)[:, 0, PAD:-PAD, PAD:-PAD]
            loss = loss_fn(out, yb[:, PAD:-PAD, PAD:-PAD].float())
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def skunet_fit(X, y, epochs, per_image, **kwargs) -> float:
    seg = UNetSegmenter(
        **NET,
        patch_size=PATCH,
        padding=PAD,
        patches_per_image=per_image,
        batch_size=BATCH,
        lr=1e-3,
        max_epochs=epochs,
        train_split=None,
        verbose=0,
        random_state=0,
        **kwargs,
    )
    start = time.perf_counter()
    seg.fit(X, y)
    return time.perf_counter() - start


# ------------------------------------------------------------------------- predict
def fitted_segmenter(**kwargs) -> UNetSegmenter:
    X, y = images(2)
    seg = UNetSegmenter(
        **NET,
        patch_size=PATCH,
        padding=0,
        batch_size=4,
        max_epochs=1,
        train_split=None,
        verbose=0,
        random_state=0,
        **kwargs,
    )
    return seg.fit(X, y).set_params(tile_size=PATCH, tile_overlap=0.25)


def monai_predict(seg, image: np.ndarray) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(image.astype(np.float32) / 255)[None, None]
    seg.module_.eval()
    with torch.inference_mode():
        out = sliding_window_inference(
            x,
            roi_size=(PATCH, PATCH),
            sw_batch_size=4,
            overlap=0.25,
            mode="gaussian",
            predictor=lambda t: torch.sigmoid(seg.module_(t)),
        )
    return out[0, 0].numpy()


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork and exec)."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(model: str, size: int) -> None:
    """Run in a child process: load a model, predict one size x size image, print peak RSS."""
    seg = UNetSegmenter.load(model)
    image = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
    before = _peak_rss_mb()
    start = time.perf_counter()
    mask = seg.predict([image])[0]
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {
                "peak_rss_mb": peak,
                "rss_before_predict_mb": before,
                "seconds": seconds,
                "shape": list(mask.shape),
            }
        )
    )


# ---------------------------------------------------------------------------- FLOPs
# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--table", action="store_true", help="print the table of the last run")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        record = json.loads((RESULTS / "speed.json").read_text())
        print(
            f"{record['command']}, {record['date']}, {record['machine']['cpu']}, "
            f"{record['machine']['cores']} cores"
        )
        print_table(record)
        return
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    r = args.repeats
    figures: dict = {}

    # fit: skunet against the plain loop, interleaved
    X, y = images(8)
    epochs, per_image = (1, 1) if args.quick else (2, 2)
    plain_fit(X[:2], y[:2], 1, 1), skunet_fit(X[:2], y[:2], 1, 1)  # warm-up
    ratios, ratios_same, plain_s, ours_s = [], [], [], []
    for _ in range(r):
        p = plain_fit(X, y, epochs, per_image)
        s = skunet_fit(X, y, epochs, per_image)
        s_nchw = skunet_fit(X, y, epochs, per_image, channels_last=False)
        plain_s.append(p)
        ours_s.append(s)
        ratios.append(p / s)
        ratios_same.append(p / s_nchw)
    patches = len(X) * per_image * epochs
    figures["fit"] = {
        "throughput_ratio_skunet_over_plain": spread(ratios, "median"),
        "throughput_ratio_same_layout": spread(ratios_same, "median"),
        "plain_patches_per_s": spread([patches / t for t in plain_s], "median"),
        "skunet_patches_per_s": spread([patches / t for t in ours_s], "median"),
        "setup": f"{len(X)} images 320^2, {per_image} patches each, {epochs} epochs, "
        f"patch {PATCH}+2x{PAD}, batch {BATCH}, UNet depth 4 base 16, Adam; skunet with its "
        "defaults (channels-last), the plain loop NCHW (the same_layout row: both NCHW)",
    }
    print("fit", json.dumps(figures["fit"]["throughput_ratio_skunet_over_plain"]), flush=True)

    # tiled prediction against MONAI
    size = 1024 if args.quick else 2048
    image = np.random.default_rng(1).integers(0, 255, (size, size), dtype=np.uint8)
    seg = fitted_segmenter(channels_last=False)
    ours_nchw = seg.predict_proba([image])[0][1]
    theirs = monai_predict(seg, image)
    fast = fitted_segmenter()
    ratios, ratios_same, ours_t, theirs_t = [], [], [], []
    for _ in range(r):
        t_m, _ = timed(monai_predict, seg, image)
        t_s, _ = timed(seg.predict_proba, [image])
        t_f, _ = timed(fast.predict_proba, [image])
        theirs_t.append(t_m)
        ours_t.append(t_f)
        ratios.append(t_m / t_f)
        ratios_same.append(t_m / t_s)
    figures["predict_vs_monai"] = {
        "image": f"{size}x{size}",
        "throughput_ratio_skunet_over_monai": spread(ratios, "median"),
        "throughput_ratio_same_layout": spread(ratios_same, "median"),
        "skunet_seconds": spread(ours_t, "median"),
        "monai_seconds": spread(theirs_t, "median"),
        "max_abs_diff_identical_settings": float(np.abs(ours_nchw - theirs).max()),
        "setup": "roi 256, overlap 0.25, gaussian, 4 tiles a batch; skunet with its defaults "
        "(channels-last), MONAI NCHW (the same_layout row: both NCHW)",
    }
    print(
        "predict",
        json.dumps(figures["predict_vs_monai"]["throughput_ratio_skunet_over_monai"]),
        flush=True,
    )

    # how cost grows
    sizes = [256, 512, 1024] if args.quick else [512, 1024, 2048, 4096]
    grow = {}
    for n in sizes:
        im = np.random.default_rng(n).integers(0, 255, (n, n), dtype=np.uint8)
        grow[f"{n}^2"] = spread(
            [timed(fast.predict, [im])[0] for _ in range(max(1, r - 1))], "median"
        )
    base = sizes[0]
    figures["predict_scaling"] = {
        "seconds": grow,
        "seconds_per_megapixel": {
            k: v["median"] / (int(k[:-2]) ** 2 / 1e6) for k, v in grow.items()
        },
        "relative_to_linear": {
            k: (v["median"] / grow[f"{base}^2"]["median"]) / (int(k[:-2]) ** 2 / base**2)
            for k, v in grow.items()
        },
    }
    per_epoch = {}
    for n in [4, 8, 16] if not args.quick else [2, 4]:
        Xn, yn = images(n, seed=n)
        per_epoch[n] = spread([skunet_fit(Xn, yn, 1, 1) for _ in range(max(1, r - 1))], "median")
    figures["fit_scaling"] = {"seconds_per_epoch_by_images": per_epoch}
    print("scaling done", flush=True)

    # peak memory on a huge image, in a fresh process
    big = 2048 if args.quick else 8192
    with tempfile.TemporaryDirectory() as tmp:
        model = fast.set_params(tile_size=None).save(f"{tmp}/model.skunet")
        child = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(model), str(big)],
            capture_output=True,
            text=True,
            check=True,
        )
    figures["peak_rss"] = {"image": f"{big}x{big}", **json.loads(child.stdout.splitlines()[-1])}
    print("rss", figures["peak_rss"], flush=True)

    # compute efficiency
    mm = spread([matmul_gflops() for _ in range(r)], "median")
    eff = {}
    for name, cl, train in [
        ("predict_nchw", False, False),
        ("predict_channels_last", True, False),
        ("train_nchw", False, True),
        ("train_channels_last", True, True),
    ]:
        g = [unet_gflops(cl, train)[0] for _ in range(r)]
        eff[name] = {
            "gflops": spread(g, "median"),
            "fraction_of_matmul": statistics.median(g) / mm["median"],
        }
    figures["compute"] = {"matmul_2048_fp32_gflops": mm, "unet_depth4_base16_4x256": eff}

    # each task preset's training throughput, in the same run as the plain loop above
    # (a preset that trains in bfloat16 is held against the bfloat16 matmul)
    peak = {torch.float32: mm}
    if native_bfloat16("cpu"):
        peak[torch.bfloat16] = spread(
            [matmul_gflops(dtype=torch.bfloat16) for _ in range(r)], "median"
        )
        figures["compute"]["matmul_2048_bf16_gflops"] = peak[torch.bfloat16]
    presets = {}
    for task, recipe in PRESETS:
        runs = [preset_throughput(task, recipe) for _ in range(r)]
        gflops = [run["gflops"] for run in runs]
        dtype = autocast_dtype("cpu", runs[0]["autocast"]) or torch.float32
        presets[f"{task}:{recipe}"] = {
            **{k: v for k, v in runs[0].items() if k not in ("windows_per_s", "gflops")},
            "dtype": str(dtype).removeprefix("torch."),
            "windows_per_s": spread([run["windows_per_s"] for run in runs], "median"),
            "gflops": spread(gflops, "median"),
            "fraction_of_matmul": statistics.median(gflops) / peak[dtype]["median"],
        }
        print(task, recipe, json.dumps(presets[f"{task}:{recipe}"]["windows_per_s"]), flush=True)
    figures["presets"] = presets

    path = write("speed", {"repeats": r, "quick": args.quick, **figures})
    print_table(figures)
    print(f"\nwritten: {path}")


def print_table(f: dict) -> None:
    def m(d):
        return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"

    eff = f["compute"]["unet_depth4_base16_4x256"]
    rows = [
        (
            "fit throughput, skunet / plain loop (target >= 0.98)",
            m(f["fit"]["throughput_ratio_skunet_over_plain"]),
        ),
        ("same, both NCHW", m(f["fit"]["throughput_ratio_same_layout"])),
        (
            f"tiled predict {f['predict_vs_monai']['image']}, skunet / MONAI (target >= 1.5)",
            m(f["predict_vs_monai"]["throughput_ratio_skunet_over_monai"]),
        ),
        ("same, both NCHW", m(f["predict_vs_monai"]["throughput_ratio_same_layout"])),
        (
            "max abs difference to MONAI, identical settings (target <= 1e-4)",
            f"{f['predict_vs_monai']['max_abs_diff_identical_settings']:.1e}",
        ),
        (
            f"peak RSS predicting {f['peak_rss']['image']} (target <= 1.5 GB)",
            f"{f['peak_rss']['peak_rss_mb'] / 1024:.2f} GB in {f['peak_rss']['seconds']:.0f} s",
        ),
        (
            "predict time per megapixel, " + ", ".join(f["predict_scaling"]["seconds"]),
            ", ".join(f"{v:.2f}" for v in f["predict_scaling"]["seconds_per_megapixel"].values())
            + " s",
        ),
        (
            "fit seconds per epoch by images, "
            + ", ".join(str(k) for k in f["fit_scaling"]["seconds_per_epoch_by_images"]),
            ", ".join(
                f"{v['median']:.1f}"
                for v in f["fit_scaling"]["seconds_per_epoch_by_images"].values()
            ),
        ),
        ("fp32 matmul 2048^2, GFLOP/s", m(f["compute"]["matmul_2048_fp32_gflops"])),
    ]
    if "matmul_2048_bf16_gflops" in f["compute"]:
        rows.append(("bf16 matmul 2048^2, GFLOP/s", m(f["compute"]["matmul_2048_bf16_gflops"])))
    for name, v in eff.items():
        rows.append(
            (
                f"U-Net {name.replace('_', ' ')}, GFLOP/s (fraction of matmul; target >= 0.9)",
                f"{m(v['gflops'])} ({v['fraction_of_matmul']:.2f})",
            )
        )
    for key, v in f.get("presets", {}).items():
        rows.append(
            (
                f"preset {key} training ({v['window']} px windows, batch {v['batch_size']}, "
                f"{v['dtype']}): windows/s; GFLOP/s (fraction of the {v['dtype']} matmul)",
                f"{m(v['windows_per_s'])}; {m(v['gflops'])} ({v['fraction_of_matmul']:.2f})",
            )
        )
    print("\n| measure | median (min-max) |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
