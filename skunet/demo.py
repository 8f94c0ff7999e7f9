"""``skunet demo``: the pretrained nuclei model beside a small U-Net trained on the
bundled nuclei sample."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline

from .callbacks import ProgressBar
from .datasets import load_sample, sample_ids
from .estimator import UNetSegmenter
from .metrics import dice_score, iou_score, match_dataset
from .plotting import plot_instances, plot_predictions
from .preprocessing import ImageNormalizer
from .pretrained import load_model

__all__ = ["run_demo"]


def run_demo(
    out: str | Path = "skunet-demo",
    epochs: int = 30,
    seed: int = 0,
    device: str = "cpu",
    verbose: int = 1,
) -> dict:
    """Train on 9 of the 12 bundled images, score the other 3 beside the pretrained
    ``nuclei`` model, write metrics and pictures.

    Returns the metrics written to ``out/metrics.json``: ``held_out_iou`` is the mean over
    the held-out images of the trained model's foreground IoU; ``ap50`` the object AP at
    IoU 0.5 of its connected components and of the pretrained model's nuclei.
    ``predictions.png`` shows the trained model's masks, ``nuclei.png`` both models'
    nuclei in colour.
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
    trained_nuclei = list(seg.predict_instances(pipe[0].transform(X_test)))
    pretrained = load_model("nuclei", device=device)
    start = time.perf_counter()
    pretrained_nuclei = list(pretrained.predict_instances(X_test))
    pretrained_seconds = time.perf_counter() - start
    labels = [y[i] for i in test]
    # the sample images the pretrained model never trained on (none when it trained on
    # every DSB2018 image: its figures on unseen images are on its card)
    unseen = pretrained.pretrained_.never_saw(sample_ids("nuclei"))
    unseen_nuclei = list(pretrained.predict_instances([X[i] for i in unseen])) if unseen else []
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
        "ap50": {
            "trained": match_dataset(labels, trained_nuclei).accuracy,
            "pretrained": match_dataset(labels, pretrained_nuclei).accuracy,
        },
        # the held-out images the pretrained model trained on, and its AP on those it never saw
        "pretrained_trained_on": [int(i) for i in test if i not in unseen],
        "pretrained_unseen": unseen,
        "pretrained_ap50_unseen": (
            match_dataset([y[i] for i in unseen], unseen_nuclei).accuracy if unseen else None
        ),
        "pretrained_model": pretrained.pretrained_.key,
        "pretrained_seconds": round(pretrained_seconds, 1),
    }
    titles = [f"held-out sample {i}" for i in test]
    figure = out / "predictions.png"
    plot_predictions(X_test, y_test, pred, figure, titles=titles)
    nuclei = out / "nuclei.png"
    more = {f"trained {epochs} epochs here": trained_nuclei}
    seen = ["" if i in unseen else " (pretrained on it)" for i in test]
    plot_instances(
        X_test,
        labels,
        pretrained_nuclei,
        nuclei,
        titles=[t + s for t, s in zip(titles, seen)],
        more=more,
        predicted=f"pretrained {pretrained.pretrained_.key}",
    )
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
    ap = metrics["ap50"]
    never_saw = (
        f"and scores {metrics['pretrained_ap50_unseen']:.3f} on samples {unseen}, which it "
        "never saw"
        if unseen
        else "as on every bundled image; its figures on DSB2018 images it never saw: "
        "`skunet models`"
    )
    print(
        f"\nnuclei, AP at IoU 0.5 on the same images: trained here {ap['trained']:.3f}; "
        f"pretrained {metrics['pretrained_model']} {ap['pretrained']:.3f} (no training, "
        f"{pretrained_seconds:.1f} s; it trained on samples {metrics['pretrained_trained_on']}, "
        f"{never_saw})"
    )
    print(f"metrics: {out / 'metrics.json'}")
    print(f"picture: {figure}")
    print(f"nuclei:  {nuclei}")
    return metrics
