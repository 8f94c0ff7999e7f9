"""Object accuracy of an H&E nuclei recipe on held-out tiles, beside StarDist at equal minutes.

    python benchmarks/he_data.py --monuseg SRC/monuseg --cpm SRC/cpm --out ../data/he-nuclei
    python benchmarks/he_nuclei.py --config cpu --variants distance stardist
    python benchmarks/he_nuclei.py --config cpu --all-images --save runs/he  # a model to ship
    python benchmarks/he_nuclei.py --config cpu --init runs/he/NAME.skunet --minutes 50  # more
    python benchmarks/he_data.py --dsb SRC/dsb --out ../data/he-dsb
    python benchmarks/he_nuclei.py --config cpu --train-also ../data/he-dsb  # more training
    python benchmarks/he_nuclei.py --table

``benchmarks/nuclei.py`` on the H&E tiles that ``he_data.py`` assembles at 40x (the 30
MoNuSeg 2018 training tiles and the 15 CPM-15 tiles, RGB): the same fixed 15 % held out
by image (seed 0; 7 tiles), the same variants, the same StarDist peer (3 input channels)
trained for the minutes our network trained, the same scoring, plus the Aggregated
Jaccard Index (:func:`skunet.metrics.aji_score`, the mean of the tiles' AJIs, as MoNuSeg
ranks) and each method's prediction seconds per megapixel on this machine.
``--train-also`` adds training images after the split (DSB2018's bright-field images in
mosaics, from ``he_data.py --dsb``): the held-out tiles stay the same 7. The MoNuSeg
2018 *test* images are never read here: they judge the shipped model. Records go to
``benchmarks/results/he_nuclei.json``.

The ``cpu`` configuration is nuclei.py's with eight 256 px patches per tile and epoch
(the tiles are about 1000 px across, DSB2018's images a quarter of that) and 25 minutes
of training at most.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nuclei import CONFIGS, Dataset, main

from skunet.callbacks import TimeLimit
from skunet.datasets import paired_files, read_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "he-nuclei"
RESULTS_FILE = Path(__file__).parent / "results" / "he_nuclei.json"
HE_CONFIGS = {
    "cpu": {
        **CONFIGS["cpu"],
        "patches_per_image": 8,
        "max_epochs": 40,
        "callbacks": [("time_limit", TimeLimit(25))],
    },
    "gpu": {"patches_per_image": 8},
    "smoke": {**CONFIGS["smoke"], "patches_per_image": 1},
}


def load_he(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The RGB tiles and their instance labels, paired by name (``images/``, ``masks/``)."""
    if not (folder / "images").is_dir():
        raise SystemExit(f"{folder}: no images/ folder; assemble it with benchmarks/he_data.py")
    pairs = paired_files(folder / "images", folder / "masks")
    X = [read_image(image)[..., :3] for image, _ in pairs.values()]
    y = [read_image(mask).astype(np.int32) for _, mask in pairs.values()]
    return X, y


HE = Dataset("H&E (MoNuSeg 2018 training + CPM-15, 40x)", DEFAULT_DATA, RESULTS_FILE, load_he,
             HE_CONFIGS, __doc__)  # fmt: skip

if __name__ == "__main__":
    main(HE)
