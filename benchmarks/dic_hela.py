"""Whole cells of a new kind: DIC-HeLa (Cell Tracking Challenge), fine-tuned on k frames.

    python benchmarks/dic_hela.py trial --base nuclei --k 9 --minutes 3 --name NAME
    python benchmarks/dic_hela.py run --grid-k 1 3 9 --grid-minutes 2 5 10
    python benchmarks/dic_hela.py table

The 2015 U-Net paper's second task: HeLa cells under differential interference
contrast, about 110 px across in 512 x 512 frames, five times a DSB2018 nucleus. The
trained-on frames are the k first of sequence 01's 9 annotated ones
(``../shared/data/ctc-dic-hela``, in the order of :data:`TRAIN_ORDER`). They are
judged by the challenge's SEG (:func:`skunet.metrics.seg_score`) on :data:`TEST_FRAMES`,
8 frames of sequence 01 at least 4 frames away from every annotated one, against the
challenge's silver truth (made by computer from the best entries; on the 9 annotated
frames it agrees with the manual truth at SEG 0.88-0.97). Make that folder once from
the public repository (``--silver``, default ``/work/data/dic-hela-01``)::

    git -C REPO show HEAD:DIC-C2DH-HeLa/01/tNNN.tif > images/tNNN.tif
    git -C REPO show HEAD:DIC-C2DH-HeLa/01_ST/SEG/man_segNNN.tif > silver/tNNN.tif

(REPO: github oyishyi/Cell-Tracking-Challenge-CTC-, commit fbe15c9c.) Sequence 02 is
the judge's: nothing here reads it.

Bases: a zoo model's name (fine-tuned by :func:`skunet.pretrained.fine_tune`),
``scratch`` (the nuclei ``unet`` recipe as a user would run it, fresh weights, its own
validation split, the same minutes), ``stardist`` (StarDist2D from scratch, the same minutes).
Every trial goes to ``benchmarks/results/dic_hela_trials.json``; ``run`` writes the grid
to ``benchmarks/results/dic_hela.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _record import RESULTS, load, update

from skunet.intake.annotation import labelled_only
from skunet.metrics import seg_score

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctc-dic-hela"
SILVER = Path("/work/data/dic-hela-01")
TRIALS = RESULTS / "dic_hela_trials.json"
RESULTS_FILE = RESULTS / "dic_hela.json"
PEER = Path(__file__).parent / "stardist_peer.py"
PEER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-stardist" / "bin" / "python"
STARDIST_RECORD: dict = {}
MODEL: dict = {}  # the last skunet model trained, for its record
# frames with a manual truth, in the order k takes them (spread over the sequence;
# t067 annotates 3 cells only, so it comes last)
TRAIN_ORDER = ("t021", "t054", "t002", "t039", "t031", "t005", "t034", "t033", "t067")
TEST_FRAMES = ("t010", "t015", "t026", "t045", "t060", "t076", "t080", "t083")
# The recipe trials' harder split: trained on early frames, judged on late ones, where
# the cells have divided and crowd (a shift of the kind another sequence brings)
SPLITS = {
    "spread": (TRAIN_ORDER, TEST_FRAMES),
    "late": (
        ("t002", "t005", "t021", "t031", "t033", "t034"),
        ("t060", "t063", "t072", "t076", "t080", "t083"),
    ),
}


def read(folder: Path, names) -> list[np.ndarray]:
    return [tifffile.imread(folder / f"{n}.tif") for n in names]


# frames whose manual truth annotates only some cells (the data's README)
PARTIAL = ("t067",)


def training_frames(
    k: int, split: str = "spread", data: Path = DATA, partial: bool = False
) -> tuple[list, list]:
    """The first k training frames of ``split``; ``partial``: the unannotated pixels of
    :data:`PARTIAL` frames marked -1 (their painted cells only), not background."""
    names = SPLITS[split][0][:k]
    if len(names) < k:
        raise ValueError(f"split {split!r} has {len(names)} training frames, not {k}")
    masks = read(data / "masks", names)
    if partial:
        masks = [labelled_only(m) if n in PARTIAL else m for n, m in zip(names, masks)]
    return read(data / "images", names), masks


def test_frames(split: str = "spread", silver: Path = SILVER) -> tuple[list, list]:
    names = SPLITS[split][1]
    return read(silver / "images", names), read(silver / "silver", names)


def rescaled(images: list, masks: list | None, scale: float) -> tuple[list, list | None]:
    """Images (linear, anti-aliased) and masks (nearest) resized by ``scale``."""
    from skimage.transform import rescale

    if scale == 1:
        return images, masks
    X = [rescale(x.astype(np.float32), scale, order=1, anti_aliasing=True) for x in images]
    if masks is None:
        return X, None
    y = [
        rescale(m, scale, order=0, anti_aliasing=False, preserve_range=True).astype(m.dtype)
        for m in masks
    ]
    return X, y


def upscaled(labels: list, shapes: list) -> list:
    from skimage.transform import resize

    return [
        resize(lab, shape, order=0, anti_aliasing=False, preserve_range=True).astype(lab.dtype)
        for lab, shape in zip(labels, shapes)
    ]


def train(base: str, X: list, y: list, minutes: float, seed: int, params: dict):
    """A fitted model: (predict(images) -> labels, epochs)."""
    if base == "stardist":
        return (lambda images: stardist(X, y, images, minutes, seed)), None
    if base == "scratch":  # the nuclei recipe as it is, its own validation split
        from _record import with_time_limit

        from skunet.presets import nuclei_segmenter
        from skunet.pretrained import UNTIL_THE_MINUTES

        if len(X) < 2:  # one image leaves none for validation, as the recipe says
            params = {"train_split": None, **params}
        seg = nuclei_segmenter(verbose=0, random_state=seed, max_epochs=UNTIL_THE_MINUTES, **params)
        with_time_limit(seg, minutes).fit(X, y)
        MODEL["seg"] = seg
        return (lambda images: seg.predict_instances(images)), len(seg.history)
    from skunet.pretrained import fine_tune

    seg = fine_tune(base, X, y, minutes=minutes, random_state=seed, **params)  # minutes bind
    MODEL["seg"] = seg
    return (lambda images: seg.predict_instances(images)), seg.fine_tuned_["epochs"]


def stardist(X: list, y: list, test: list, minutes: float, seed: int) -> list:
    """StarDist 2D from scratch on ``X, y`` for ``minutes`` (benchmarks/stardist_peer.py in
    its own environment, 10 steps per epoch so that the budget binds to ~10 s), with one
    of 3+ images held out for its thresholds as ``fine_tune`` holds one out (fewer: it
    optimises them on the training images); the labels of ``test``."""
    held = [int(np.random.default_rng(seed).integers(len(X)))] if len(X) >= 3 else []
    train = [i for i in range(len(X)) if i not in held]
    valid = held or train
    arrays = {
        **{f"train_{k}": X[i] for k, i in enumerate(train)},
        **{f"train_labels_{k}": y[i] for k, i in enumerate(train)},
        **{f"valid_{k}": X[i] for k, i in enumerate(valid)},
        **{f"valid_labels_{k}": y[i] for k, i in enumerate(valid)},
        **{f"test_{k}": x for k, x in enumerate(test)},
    }
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "split.npz", **arrays)
        command = [
            os.environ.get("SKUNET_PEER_PYTHON", str(PEER_PYTHON)),
            str(PEER),
            f"{tmp}/split.npz",
            f"{tmp}/out.npz",
            "--seconds",
            str(60 * minutes),
            "--steps-per-epoch",
            "10",
            "--seed",
            str(seed),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
        out = np.load(Path(tmp) / "out.npz")
        STARDIST_RECORD.update(json.loads(str(out["record"])))
        return [out[f"test_{k}"] for k in range(len(test))]


def trial(args: argparse.Namespace) -> dict:
    from skunet.augment import Augment

    names = {"np": np, "Augment": Augment}
    params = {k: eval(v, names) for k, v in (s.split("=", 1) for s in args.set)}
    X, y = rescaled(*training_frames(args.k, args.split, partial=args.partial), args.scale)
    Xt, yt = test_frames(args.split, args.silver)
    start = time.perf_counter()
    predict, epochs = train(args.base, X, y, args.minutes, args.seed, params)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = predict(rescaled(Xt, None, args.scale)[0])
    predicted = upscaled(predicted, [t.shape for t in yt]) if args.scale != 1 else predicted
    per_frame = [seg_score(t, p) for t, p in zip(yt, predicted)]
    figures = {
        "base": args.base,
        "k": args.k,
        "minutes": args.minutes,
        "params": args.set,
        "split": args.split,
        "scale": args.scale,
        "partial": args.partial,
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "predict_seconds": round(time.perf_counter() - start, 1),
        "SEG": round(seg_score(yt, predicted), 4),
        "SEG_per_frame": [round(s, 3) for s in per_frame],
    }
    if args.picture:  # the worst test frame: image, silver truth, prediction
        from skunet.plotting import plot_instances

        worst = int(np.argmin(per_frame))
        name = f"dic_hela_{args.name or args.base}_worst.png".replace("/", "_")
        plot_instances(
            [Xt[worst]],
            [yt[worst]],
            [predicted[worst]],
            RESULTS / name,
            titles=[f"{SPLITS[args.split][1][worst]}: SEG {per_frame[worst]:.3f}"],
        )
    if args.base != "stardist":  # the thresholds it decoded with (calibrated or its own)
        figures["instances"] = MODEL["seg"].predictor_.instance_settings()
        # frames fine_tune took as partly annotated (MODEL holds the last skunet model:
        # a StarDist cell must not report the one trained before it)
        if found := getattr(MODEL["seg"], "fine_tuned_", {}).get("partial"):
            names = SPLITS[args.split][0][: args.k]
            figures["taken_as_partial"] = [names[i] for i in found]
    if args.base == "stardist":
        figures.update(epochs=STARDIST_RECORD["epochs"], stardist=dict(STARDIST_RECORD))
        figures["train_seconds"] = STARDIST_RECORD["fit_seconds"]
    print(figures, flush=True)
    name = args.name or f"{args.base}_k{args.k}_{args.minutes:g}min"
    update(RESULTS_FILE if args.what == "run" else TRIALS, name, figures)
    return figures


def run(args: argparse.Namespace) -> None:
    """The grid, each cell recorded as it finishes (a stopped run keeps what it did)."""
    for minutes in args.grid_minutes:
        for k in args.grid_k:
            for base in args.bases:
                cell = argparse.Namespace(**{**vars(args), "base": base, "k": k})
                cell.minutes, cell.name = minutes, None
                if f"{base}_k{k}_{minutes:g}min" in load(RESULTS_FILE) and not args.again:
                    continue  # recorded by an earlier run
                trial(cell)


def table(path: Path = RESULTS_FILE) -> str:
    """The docs table: SEG on the test frames per base and k, one column per budget."""
    records = {key: r for key, r in load(path).items() if isinstance(r, dict) and "SEG" in r}
    budgets = sorted({r["minutes"] for r in records.values()})
    rows = sorted({(r["base"], r["k"]) for r in records.values()}, key=lambda b: (b[0], b[1]))
    lines = [
        "| base | k frames | " + " | ".join(f"{m:g} min" for m in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for base, k in rows:
        cells = []
        for m in budgets:
            r = next(
                (r for r in records.values() if (r["base"], r["k"], r["minutes"]) == (base, k, m)),
                None,
            )
            cells.append("" if r is None else f"{r['SEG']:.3f} ({r['epochs']} ep)")
        lines.append(f"| {base} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["trial", "run", "table"])
    parser.add_argument("--base", default="nuclei")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--silver", type=Path, default=SILVER)
    parser.add_argument("--split", choices=list(SPLITS), default="spread")
    parser.add_argument("--scale", type=float, default=1.0, help="resize the frames by this")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=EXPR")
    parser.add_argument("--name")
    parser.add_argument("--picture", action="store_true", help="save the worst test frame")
    parser.add_argument("--again", action="store_true", help="run: redo recorded cells")
    parser.add_argument(
        "--partial", action="store_true", help="mark the unannotated cells of t067 -1"
    )
    parser.add_argument("--grid-k", type=int, nargs="+", default=[1, 3, 9])
    parser.add_argument("--grid-minutes", type=float, nargs="+", default=[2, 5, 10])
    parser.add_argument("--bases", nargs="+", default=["nuclei", "scratch", "stardist"])
    args = parser.parse_args()
    if args.what == "trial":
        trial(args)
    elif args.what == "run":
        run(args)
    else:
        print(table())


if __name__ == "__main__":
    main()
