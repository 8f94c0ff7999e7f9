"""StarDist 2D trained from scratch for a wall-clock budget: the peer of the nuclei benchmark.

    python benchmarks/stardist_peer.py SPLIT.npz OUT.npz --seconds 1200

Runs in its own environment (``stardist`` and ``tensorflow-cpu``; see docs/tasks/nuclei.md's
nuclei benchmark), so that skunet's needs TensorFlow nowhere. ``benchmarks/nuclei.py
--variants distance stardist`` writes the split, calls this script with the budget its own
network trained for, and scores the returned label images with skunet's code.

The configuration is StarDist's 2-D training notebook's: 32 rays, grid (2, 2), 256 px
patches, batch 4, its augmenter (flips and 90-degree rotations, intensity scale and
shift, a little Gaussian noise), images normalised to their 1st / 99.8th percentiles,
label holes filled; training stops at the first epoch end past the budget (the
notebook's 100 steps per epoch), then ``optimize_thresholds`` on the validation images.

``SPLIT.npz`` holds ``train_<i>``, ``train_labels_<i>``, ``valid_<i>``,
``valid_labels_<i>`` and ``test_<i>`` arrays; ``OUT.npz`` gets ``test_<i>`` label images
and a ``record`` (JSON: steps, epochs, seconds, thresholds).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def arrays(data, prefix: str) -> list[np.ndarray]:
    n = len([k for k in data.files if k.startswith(prefix) and k[len(prefix) :].isdigit()])
    return [data[f"{prefix}{i}"] for i in range(n)]


RNG = np.random.default_rng(0)


def random_fliprot(img, mask):
    axes = tuple(range(mask.ndim))
    perm = tuple(RNG.permutation(axes))
    channels = tuple(range(mask.ndim, img.ndim))  # an RGB image's last axis stays last
    img, mask = img.transpose(perm + channels), mask.transpose(perm)
    for ax in axes:
        if RNG.random() > 0.5:
            img, mask = np.flip(img, axis=ax), np.flip(mask, axis=ax)
    return img, mask


def augmenter(x, y):
    """The notebook's augmenter (its random draws from one seeded generator)."""
    x, y = random_fliprot(x, y)
    x = x * RNG.uniform(0.6, 2) + RNG.uniform(-0.2, 0.2)
    sigma = 0.02 * RNG.uniform(0, 1)
    return x + sigma * RNG.normal(0, 1, x.shape), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", help="npz written by benchmarks/nuclei.py")
    parser.add_argument("out", help="npz of predicted label images")
    parser.add_argument("--seconds", type=float, required=True, help="training budget")
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    global RNG
    RNG = np.random.default_rng(args.seed)
    tf.keras.utils.set_random_seed(args.seed)  # Python, NumPy's global state, TensorFlow
    data = np.load(args.split)
    prep = lambda x: normalize(x, 1, 99.8, axis=(0, 1))  # noqa: E731  (the notebook's)
    X_trn = [prep(x) for x in arrays(data, "train_")]
    Y_trn = [fill_label_holes(y) for y in arrays(data, "train_labels_")]
    X_val = [prep(x) for x in arrays(data, "valid_")]
    Y_val = [fill_label_holes(y) for y in arrays(data, "valid_labels_")]
    X_test = [prep(x) for x in arrays(data, "test_")]

    conf = Config2D(
        n_rays=32,
        grid=(2, 2),
        use_gpu=False,
        n_channel_in=1 if X_trn[0].ndim == 2 else X_trn[0].shape[-1],  # RGB: 3
        train_patch_size=(256, 256),
        train_batch_size=4,
    )
    model = StarDist2D(conf, name="stardist_peer", basedir=None)
    model.prepare_for_training()

    class Budget(tf.keras.callbacks.Callback):
        """Stop at the first epoch end past the budget; count the steps."""

        def __init__(self):
            super().__init__()
            self.steps, self.epochs = 0, 0

        def on_train_begin(self, logs=None):
            self.start = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            if time.monotonic() - self.start > args.seconds:
                self.model.stop_training = True

    budget = Budget()
    model.callbacks.append(budget)
    start = time.perf_counter()
    model.train(
        X_trn,
        Y_trn,
        validation_data=(X_val, Y_val),
        augmenter=augmenter,
        epochs=100_000,
        steps_per_epoch=args.steps_per_epoch,
    )
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    thresholds = model.optimize_thresholds(X_val, Y_val)
    calibrate_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = [model.predict_instances(x)[0].astype(np.int32) for x in X_test]
    predict_seconds = time.perf_counter() - start
    record = {
        "fit_seconds": round(fit_seconds, 1),
        "optimize_thresholds_seconds": round(calibrate_seconds, 1),
        "predict_seconds": round(predict_seconds, 1),
        "steps": budget.steps,
        "epochs": budget.epochs,
        "thresholds": {k: float(v) for k, v in dict(thresholds).items()},
        "config": {"n_rays": 32, "grid": [2, 2], "patch": 256, "batch": 4},
        "stardist": __import__("stardist").__version__,
        "tensorflow": tf.__version__,
    }
    np.savez_compressed(
        args.out,
        record=json.dumps(record),
        **{f"test_{i}": p for i, p in enumerate(predicted)},
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main()
