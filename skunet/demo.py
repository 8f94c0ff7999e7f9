"""``skunet demo``: a small U-Net trained on the bundled nuclei sample."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline

from .callbacks import ProgressBar
from .datasets import load_sample
from .estimator import UNetSegmenter
from .metrics import dice_score, iou_score
from .plotting import plot_predictions
from .preprocessing import ImageNormalizer

__all__ = ["run_demo"]


def run_demo(
    out: str | Path = "skunet-demo",
    epochs: int = 30,
    seed: int = 0,
    device: str = "cpu",
    verbose: int = 1,
) -> dict:
    """Train on 9 of the 12 bundled images, score the other 3, write metrics and a picture.

    Returns the metrics written to ``out/metrics.json``; ``held_out_iou`` is the mean over
    the held-out images of their foreground IoU.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, y = load_sample("nuclei")
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:3], order[3:]
    if verbose:
        print(
            f"skunet demo: {len(train)} training and {len(test)} held-out DSB2018 nuclei "
            f"images (bundled CC0 sample), {epochs} epochs on {device}, "
            f"{torch.get_num_threads()} CPU threads",
            flush=True,
        )
    seg = UNetSegmenter(
        module__depth=3,
        module__base_channels=16,
        module__batch_norm=True,
        patch_size=128,
        padding=16,
        patches_per_image=8,
        batch_size=8,
        lr=3e-3,
        max_epochs=epochs,
        random_state=seed,
        device=device,
        verbose=verbose,
        callbacks=[("progress", ProgressBar())] if verbose else None,
    )
    pipe = make_pipeline(ImageNormalizer(), seg)
    start = time.perf_counter()
    pipe.fit([X[i] for i in train], [y[i] for i in train])
    seconds = time.perf_counter() - start
    X_test, y_test = [X[i] for i in test], [(y[i] > 0).astype(np.uint8) for i in test]
    pred = list(pipe.predict(X_test))
    per_image = [float(iou_score(t, p)) for t, p in zip(y_test, pred)]
    metrics = {
        "held_out_iou": float(np.mean(per_image)),
        "held_out_iou_per_image": dict(zip((f"sample {i}" for i in test), per_image)),
        "held_out_iou_pooled": float(iou_score(y_test, pred)),
        "held_out_dice_pooled": float(dice_score(y_test, pred)),
        "best_valid_iou": float(np.nanmax(seg.history[:, "valid_iou"])),
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "device": device,
    }
    figure = out / "predictions.png"
    plot_predictions(X_test, y_test, pred, figure, titles=[f"held-out sample {i}" for i in test])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if not verbose:
        return metrics
    print(f"\nforeground IoU on held-out images, after {seconds:.0f} s of training:")
    for name, value in metrics["held_out_iou_per_image"].items():
        print(f"  {name:<12} {value:.3f}")
    print(
        f"  {'mean':<12} {metrics['held_out_iou']:.3f}   "
        f"(all pixels pooled: {metrics['held_out_iou_pooled']:.3f})"
    )
    print(f"metrics: {out / 'metrics.json'}")
    print(f"picture: {figure}")
    return metrics
