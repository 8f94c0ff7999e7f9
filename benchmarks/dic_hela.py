"""Whole cells of a new kind: DIC-HeLa (Cell Tracking Challenge), fine-tuned on k frames.

    python benchmarks/dic_hela.py trial --base nuclei --k 9 --minutes 3 --name NAME
    python benchmarks/dic_hela.py run --k 1 3 9 --minutes 2 5 10   # the grid
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
import time
from pathlib import Path

import numpy as np
import tifffile
from _record import RESULTS, load, machine, update

from skunet.metrics import seg_score

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ctc-dic-hela"
SILVER = Path("/work/data/dic-hela-01")
TRIALS = RESULTS / "dic_hela_trials.json"
RESULTS_FILE = RESULTS / "dic_hela.json"
# frames with a manual truth, in the order k takes them (spread over the sequence;
# t067 annotates 3 cells only, so it comes last)
TRAIN_ORDER = ("t021", "t054", "t002", "t039", "t031", "t005", "t034", "t033", "t067")
TEST_FRAMES = ("t010", "t015", "t026", "t045", "t060", "t076", "t080", "t083")


def read(folder: Path, names) -> list[np.ndarray]:
    return [tifffile.imread(folder / f"{n}.tif") for n in names]


def training_frames(k: int, data: Path = DATA) -> tuple[list, list]:
    names = TRAIN_ORDER[:k]
    return read(data / "images", names), read(data / "masks", names)


def test_frames(silver: Path = SILVER) -> tuple[list, list]:
    return read(silver / "images", TEST_FRAMES), read(silver / "silver", TEST_FRAMES)


def train(base: str, X: list, y: list, minutes: float, seed: int, params: dict):
    """A fitted model: (predict(images) -> labels, epochs)."""
    if base == "stardist":
        from stardist_peer import train_stardist

        model, epochs = train_stardist(X, y, minutes=minutes, seed=seed)
        return model, epochs
    if base == "scratch":  # the nuclei recipe as it is, its own validation split
        from _record import with_time_limit

        from skunet.presets import nuclei_segmenter

        seg = nuclei_segmenter(verbose=0, random_state=seed, max_epochs=100_000, **params)
        with_time_limit(seg, minutes).fit(X, y)
        return (lambda images: seg.predict_instances(images)), len(seg.history)
    from skunet.pretrained import fine_tune

    params = {"max_epochs": 100_000, **params}
    seg = fine_tune(base, X, y, minutes=minutes, random_state=seed, **params)
    return (lambda images: seg.predict_instances(images)), seg.fine_tuned_["epochs"]


def trial(args: argparse.Namespace) -> dict:
    params = {k: eval(v, {"np": np}) for k, v in (s.split("=", 1) for s in args.set)}
    X, y = training_frames(args.k)
    Xt, yt = test_frames(args.silver)
    start = time.perf_counter()
    predict, epochs = train(args.base, X, y, args.minutes, args.seed, params)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = predict(Xt)
    per_frame = [seg_score(t, p) for t, p in zip(yt, predicted)]
    figures = {
        "base": args.base,
        "k": args.k,
        "minutes": args.minutes,
        "params": args.set,
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "predict_seconds": round(time.perf_counter() - start, 1),
        "SEG": round(seg_score(yt, predicted), 4),
        "SEG_per_frame": [round(s, 3) for s in per_frame],
    }
    print(figures, flush=True)
    update(TRIALS, args.name or f"{args.base}_k{args.k}_{args.minutes}min", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["trial", "table"])
    parser.add_argument("--base", default="nuclei")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--silver", type=Path, default=SILVER)
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=EXPR")
    parser.add_argument("--name")
    args = parser.parse_args()
    if args.what == "trial":
        trial(args)
    else:
        print(load(RESULTS_FILE), machine())


if __name__ == "__main__":
    main()
