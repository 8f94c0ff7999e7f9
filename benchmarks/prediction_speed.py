"""Prediction at its network's speed: the pretrained ``nuclei`` model on a large image.

    python benchmarks/prediction_speed.py [--size 2048] [--repeats 5] [--key NAME]

For float32 and, where the CPU has it natively, bfloat16 (``autocast``), with the flips
off: seconds per megapixel of

- the bare network (``module(x)`` on the whole image, under ``torch.inference_mode``),
- ``predict_proba``, ``predict_instances``, and ``predict_instances`` of the same image
  as a Dask array in 2048-pixel blocks (block-wise; ``skunet predict``'s default block)
  and in 1024-pixel blocks,
- ``predict_proba`` with the previous default tiles (``tile_size=816``, the side of one
  training batch's pixels, at ``tile_overlap=0.25``), which wasted up to a whole tile per
  row and column,

each the minimum over ``--repeats`` runs taken in turn (machine noise hits all alike),
with its ratio to the bare network and the machine's matmul rate in that precision.

Accuracy (with ``--data``, the DSB2018 folder): AP at IoU 0.5 / 0.75 of
``predict_instances`` on three mosaics of 64 DSB2018 crops each (bfloat16 as the model
predicts), with today's tiles, at overlap 0.25, with the previous tiles, and in one tile
(no seams), and on the DSB2018 images
themselves (each fits one tile, so the tiling never touches them): AP with today's
decoder (the background and the expected distance smoothed) and the earlier one (every
level smoothed), and how many images get identical labels.

Writes ``benchmarks/results/prediction_speed.json`` under ``--key`` (default: the CPU's
instruction set, so AVX2 and AVX-512 machines keep one record each). An AVX-512 machine
gives AVX2 figures with its instructions capped (same cores and clock; the record says so)::

    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
        python benchmarks/prediction_speed.py

There bfloat16 is emulated (oneDNN's reference kernels): only its matmul rate is recorded.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from _record import RESULTS, machine, update
from _throughput import matmul_gflops
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.segmentation import relabel_sequential, watershed

from skunet.datasets import load_dsb2018, load_sample
from skunet.instances import distance_instances
from skunet.metrics.matching import match_dataset
from skunet.mixed_precision import native_bfloat16
from skunet.pretrained import load_model

RESULTS_FILE = RESULTS / "prediction_speed.json"
OLD_TILE = 816  # the nuclei model's default tile until 2026-12-06


def mosaic(images: list, labels: list | None, size: int, seed: int):
    """A ``size`` x ``size`` image of 256-pixel crops (and their relabelled instances)."""
    rng = np.random.default_rng(seed)
    big = [i for i, x in enumerate(images) if min(x.shape[:2]) >= 256]
    image = np.zeros((size, size), np.uint8)
    truth = np.zeros((size, size), np.int32)
    n = 0
    for r in range(0, size, 256):
        for c in range(0, size, 256):
            i = big[rng.integers(len(big))]
            x = images[i] if images[i].ndim == 2 else images[i][..., 0]
            crop = x[: min(256, size - r), : min(256, size - c)]
            image[r : r + crop.shape[0], c : c + crop.shape[1]] = crop
            if labels is not None:
                own = relabel_sequential(labels[i][: crop.shape[0], : crop.shape[1]])[0]
                truth[r : r + crop.shape[0], c : c + crop.shape[1]] = np.where(own, own + n, 0)
                n += int(own.max())
    return image, truth


def earlier_distance_instances(p, threshold=0.5, split=0.5, sigma=1.0):
    """distance_instances as it was until 2026-12-06: every level smoothed."""
    p = ndi.gaussian_filter(p, (0, sigma, sigma))
    levels = len(p) - 1
    distance = np.tensordot((np.arange(1, levels + 1) - 0.5) / levels, p[1:], axes=1)
    mask = 1 - p[0] > threshold
    markers = label(mask & (distance > split), connectivity=1)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def timings(seg, image: np.ndarray, repeats: int, autocast: str | bool) -> dict:
    import dask.array as da

    seg.set_params(autocast=autocast, tile_size=None)
    net = seg.module_.eval()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, *image.shape), np.float32))
    lazy = da.from_array(image, chunks=2048)  # skunet predict's default block
    small = da.from_array(image, chunks=1024)

    def bare():
        with torch.inference_mode(), seg.predictor_.settings.autocast_context():
            net(x)

    def old_tiles():
        seg.set_params(tile_size=OLD_TILE, tile_overlap=0.25).predict_proba([image])
        seg.set_params(tile_size=None, tile_overlap=0.1)

    runs = {
        "network": bare,
        "predict_proba": lambda: seg.predict_proba([image]),
        "predict_instances": lambda: seg.predict_instances([image]),
        "blockwise_instances": lambda: np.asarray(seg.predict_instances(lazy)),
        "blockwise_instances_1024": lambda: np.asarray(seg.predict_instances(small)),
        "predict_proba_previous_tile": old_tiles,
    }
    for run in runs.values():  # warm-up: first calls allocate
        run()
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    mp = image.size / 1e6
    figures = {f"{k}_s_per_mp": round(v / mp, 3) for k, v in best.items()}
    figures |= {f"{k}_x_network": round(v / best["network"], 2) for k, v in best.items()}
    figures["tile"] = list(seg.predictor_.tile_sizes(image.shape))
    return figures


def accuracy(seg, data: str, size: int) -> dict:
    X, y = load_dsb2018(data, progress=False)
    seg.set_params(autocast="auto", tile_size=None, verbose=0)
    pairs = [mosaic(X, y, size, seed) for seed in range(3)]
    images, truths = [p[0] for p in pairs], [p[1] for p in pairs]
    out = {}
    settings = {
        "mosaics": (None, 0.1),
        "mosaics_overlap_0.25": (None, 0.25),
        "mosaics_previous_tiles": (OLD_TILE, 0.25),
        "mosaics_whole": (size + 32, 0.1),
    }
    for name, (tile, overlap) in settings.items():
        seg.set_params(tile_size=tile, tile_overlap=overlap)
        pred = list(seg.predict_instances(images))
        out[name] = {
            "ap50": round(match_dataset(truths, pred, 0.5).accuracy, 4),
            "ap75": round(match_dataset(truths, pred, 0.75).accuracy, 4),
        }
    seg.set_params(tile_size=None, tile_overlap=0.1)
    p = seg.predictor_
    settings = p.instance_settings()
    threshold, split = settings["threshold"], settings["split"]
    today, earlier = [], []
    for x in X:
        (proba,) = p.probabilities(p.check_images([x]))
        today.append(distance_instances(proba, threshold, split))
        earlier.append(earlier_distance_instances(proba, threshold, split))
    for name, pred in (("dsb2018_images", today), ("dsb2018_images_earlier_decoder", earlier)):
        out[name] = {
            "images": len(X),
            "ap50": round(match_dataset(y, pred, 0.5).accuracy, 4),
            "ap75": round(match_dataset(y, pred, 0.75).accuracy, 4),
        }
    out["dsb2018_images_identical_labels"] = sum(
        bool((a == b).all()) for a, b in zip(today, earlier)
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side (default 2048)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", help="the DSB2018 folder, for the accuracy figures")
    parser.add_argument("--key", help="record name (default: the CPU's instruction set)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="the results file")
    args = parser.parse_args()
    ran_on = machine()
    key = args.key or ran_on["instructions"]

    seg = load_model("nuclei", tta=False, verbose=0)
    X, _ = load_sample("nuclei")
    image, _ = mosaic(X, None, args.size, seed=0)
    capped = "instruction_caps" in ran_on  # there bfloat16 is emulated, whatever the CPU
    native = native_bfloat16() and not capped
    precisions = {"float32": False} | ({"bfloat16": "bfloat16"} if native else {})
    figures: dict = {"image": [args.size, args.size], "model": seg.pretrained_.key}
    for name, autocast in precisions.items():
        dtype = torch.bfloat16 if autocast else torch.float32
        figures[name] = {
            "matmul_gflops": round(matmul_gflops(dtype=dtype), 1),
            **timings(seg, image, args.repeats, autocast),
        }
        print(name, figures[name], flush=True)
    if capped:  # bfloat16 without AVX-512 BF16: oneDNN's reference code
        figures["bfloat16"] = {
            "matmul_gflops": round(matmul_gflops(512, dtype=torch.bfloat16), 1),
            "not_timed": "emulated bfloat16 runs at the matmul rate beside it, too slow to "
            "time a 2048² image; autocast='auto' predicts in float32 on such machines",
        }
        print("bfloat16", figures["bfloat16"], flush=True)
    if args.data:
        figures["accuracy"] = accuracy(seg, args.data, args.size)
        print("accuracy", figures["accuracy"], flush=True)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    update(args.out, key, figures)
    print(f"wrote {args.out} [{key}]")


if __name__ == "__main__":
    main()
