"""Instance labels of images larger than memory, block by block, equal to the in-memory
labels up to numbering, at any block size and for objects of any size.

Every decoder declares its independent *regions* (:class:`~skunet.instances.Regions`):
the connected components of a mask, each decoded from the probabilities in and around
it only. Three passes:

1. **Blocks** (in parallel): each block computes its probabilities with the decoder's
   halo around it, its mask and the mask's regions. Regions that touch no inner block
   border are decoded there and are final; the others are *cut*: the block keeps their
   pixels and their box.
2. **Merge** (on the client, small): cut regions that touch across block faces (or
   corners, for 8-connected decoders) are one region, found by
   :func:`scipy.sparse.csgraph.connected_components`. A decoder whose regions are its
   objects (connected components) is done; otherwise each merged region is decoded
   again, whole, from the probabilities of its box and halo (in parallel). Memory
   there grows with the largest cut region, not with the image, and nothing about an
   object's size is assumed.
3. **Labels** (lazy): each block's ids are offset by the objects of the blocks before
   it, cut regions take ids after all of those: int64 ids 1..N, no overflow, no relabel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skimage.measure import label
from skimage.segmentation import relabel_sequential

from ..targets import decoding
from .blocks import RECORD, BlockJob, chunk_grid, run_recording, write_block
from .instance_stash import Stash

__all__ = ["blockwise_instances"]


def _grow(block, halo: int, shape) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = block
    return max(r0 - halo, 0), min(r1 + halo, shape[0]), max(c0 - halo, 0), min(c1 + halo, shape[1])


def _first_pass(p, block, grown, shape, regions, decode, threshold, split) -> tuple:
    """A block's local labels (uncut objects 1..n, cut regions -1..-m), what the merge
    needs (the label strips along its four sides, each cut region's box and one of its
    pixels, in image coordinates) and, for decoders that decode merged regions again,
    each cut region's probabilities within the halo around its pixels here (``(region,
    p)``), so that no tile runs twice for them."""
    r0, r1, c0, c1 = block
    inner = (slice(r0 - grown[0], r1 - grown[0]), slice(c0 - grown[2], c1 - grown[2]))
    mask = regions.mask(p, threshold)[inner]
    comp = label(mask, connectivity=regions.connectivity)
    side = np.zeros(mask.shape, bool)
    side[0, :], side[-1, :] = r0 > 0, r1 < shape[0]
    side[:, 0] |= c0 > 0
    side[:, -1] |= c1 < shape[1]
    cut_ids = np.unique(comp[side & (comp > 0)])
    cut = np.isin(comp, cut_ids) & (comp > 0)
    objects = comp if regions.whole else decode(p, threshold, split)[inner]
    objects = relabel_sequential(np.where(cut, 0, objects))[0].astype(np.int32)
    index = np.zeros(int(comp.max()) + 1, np.int32)
    index[cut_ids] = np.arange(1, len(cut_ids) + 1)
    local = objects
    local[cut] = -index[comp[cut]]
    boxes, seeds, pieces = [], [], []
    for k, box in enumerate(ndi.find_objects(-np.minimum(local, 0)), start=1):
        rows, cols = box
        first = np.argwhere(local[box] == -k)[0]
        boxes.append((rows.start + r0, rows.stop + r0, cols.start + c0, cols.stop + c0))
        seeds.append((int(first[0]) + rows.start + r0, int(first[1]) + cols.start + c0))
        if not regions.whole:
            a0, a1, b0, b1 = _grow(boxes[-1], regions.halo, shape)
            a0, a1, b0, b1 = (
                max(a0, grown[0]),
                min(a1, grown[1]),
                max(b0, grown[2]),
                min(b1, grown[3]),
            )
            piece = p[:, a0 - grown[0] : a1 - grown[0], b0 - grown[2] : b1 - grown[2]].copy()
            pieces.append(((a0, a1, b0, b1), piece))
    meta = {
        "n": int(objects.max(initial=0)),
        "sides": (local[0].copy(), local[-1].copy(), local[:, 0].copy(), local[:, -1].copy()),
        "boxes": boxes,
        "seeds": seeds,
    }
    return local, meta, pieces


def _pairs(a: np.ndarray, b: np.ndarray, diagonal: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut-region indices facing each other across a face (strips ``a`` | ``b``)."""
    out = [(a, b)]
    if diagonal:
        out += [(a[:-1], b[1:]), (a[1:], b[:-1])]
    return [(-x[(x < 0) & (y < 0)], -y[(x < 0) & (y < 0)]) for x, y in out]


def _merge(metas: dict, grid: tuple[int, int], diagonal: bool) -> tuple[np.ndarray, dict]:
    """Group of every cut region (by block) after joining them across faces."""
    base, total = {}, 0
    for ij in sorted(metas):
        base[ij] = total - 1  # node of cut region k (1-based) of block ij: base + k
        total += len(metas[ij]["boxes"])
    rows, cols = [], []

    def join(ij, kl, a, b):
        for x, y in _pairs(a, b, diagonal):
            rows.append(x + base[ij])
            cols.append(y + base[kl])

    for (i, j), meta in metas.items():
        _, bottom, _, right = meta["sides"]
        if j + 1 < grid[1]:
            join((i, j), (i, j + 1), right, metas[i, j + 1]["sides"][2])
        if i + 1 < grid[0]:
            join((i, j), (i + 1, j), bottom, metas[i + 1, j]["sides"][0])
            if diagonal and j + 1 < grid[1]:
                join((i, j), (i + 1, j + 1), bottom[-1:], metas[i + 1, j + 1]["sides"][0][:1])
            if diagonal and j > 0:
                join((i, j), (i + 1, j - 1), bottom[:1], metas[i + 1, j - 1]["sides"][0][-1:])
    r = np.concatenate(rows) if rows else np.zeros(0, int)
    c = np.concatenate(cols) if cols else np.zeros(0, int)
    graph = sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(total, total))
    return connected_components(graph, directed=False)[1], base


def _decode_region(grown, box, seed, regions, decode, threshold, split, *members):
    """One merged cut region decoded whole: its box's labels (0 outside the region).

    ``members``: ``(pieces, k)`` of the blocks it crosses: their probabilities around
    its pixels, pasted on a background that no decoder labels (which only lies farther
    than the halo from the region, so that it changes nothing there).
    """
    k_channels = members[0][0][members[0][1] - 1][1].shape[0]
    p = np.zeros((k_channels, grown[1] - grown[0], grown[3] - grown[2]), np.float32)
    if k_channels > 1:
        p[0] = 1  # the background class (a one-channel model: foreground 0)
    for pieces, k in members:
        (a0, a1, b0, b1), piece = pieces[k - 1]
        p[:, a0 - grown[0] : a1 - grown[0], b0 - grown[2] : b1 - grown[2]] = piece
    inner = (
        slice(box[0] - grown[0], box[1] - grown[0]),
        slice(box[2] - grown[2], box[3] - grown[2]),
    )
    comp = label(regions.mask(p, threshold)[inner], connectivity=regions.connectivity)
    mine = comp == comp[seed[0] - box[0], seed[1] - box[2]]
    objects = decode(p, threshold, split)[inner]
    return relabel_sequential(np.where(mine, objects, 0))[0].astype(np.int64)


def _final_block(local, offset, lookup, pastes, block):
    """A block's global ids: its own objects offset, cut regions looked up or pasted."""
    out = np.where(local > 0, local.astype(np.int64) + offset, 0)
    if lookup is not None:
        cut = local < 0
        out[cut] = lookup[-local[cut]]
    r0, r1, c0, c1 = block
    for box, labels in pastes:
        a0, a1, b0, b1 = max(box[0], r0), min(box[1], r1), max(box[2], c0), min(box[3], c1)
        if a1 <= a0 or b1 <= b0:
            continue
        part = labels[a0 - box[0] : a1 - box[0], b0 - box[2] : b1 - box[2]]
        view = out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
        view[part > 0] = part[part > 0]
    return out


def blockwise_instances(
    predictor, X: Any, threshold: float | None, split: float | str | None, out: Any = None
):
    """Instance labels of a lazy image (see the module's description): a Dask array of
    int64, or ``out`` (a Zarr array) filled. Passes 1 and 2 run before it returns. Into
    a Zarr output, a run killed part-way resumes when run again
    (:mod:`skunet.prediction.instance_stash`)."""
    import dask.array as da

    settings = predictor.instance_settings(threshold, split)
    threshold, split = settings["threshold"], settings["split"]
    record = decoding(predictor.target, predictor.membranes)
    regions = record.regions
    if split is not None and not regions.split_local:
        raise ValueError(
            f"{record.decoder} with split={split} needs the whole image (its split reads "
            "the whole image, not one region at a time); block-wise, pass split=None, "
            "or decode predict_proba's blocks yourself"
        )
    job = BlockJob(predictor, X, chunks=chunk_grid(out) if out is not None else None)
    if out is not None:
        return _into(job, record, threshold, split, out)
    if job.whole:
        return da.from_array(_whole(job, threshold, split))
    return _labels(job, record, threshold, split)[0]


def _whole(job: BlockJob, threshold: float, split: float | None) -> np.ndarray:
    labels = job.predictor.predict_instances([np.asarray(job.image)], threshold, split)[0]
    return labels.astype(np.int64)


def _into(job: BlockJob, record, threshold: float, split: float | None, out: Any):
    """The labels written into the Zarr array ``out``, resuming a killed run of the same
    job: its stashed first passes are read, its final blocks are not written again."""
    import dask

    if not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"out has dtype {out.dtype}; instance labels need an integer dtype")
    fingerprint, done = job.claim(out, f"instances {record.decoder} {threshold} {split}")
    blocks = dict(job.blocks())
    if done is not None and len(done) == len(blocks):
        return out  # an earlier run finished
    resume = done is not None
    stash = None if job.whole else Stash.beside(out, fingerprint, out.chunks[-2:], resume)
    done = done or set()
    if stash is None and done:  # without a stash, nothing finished can be trusted
        done = set()
        out.attrs[RECORD] = {"job": fingerprint, "done": []}
    if job.whole:
        result = _whole(job, threshold, split)
        total = int(result.max(initial=0))
    else:
        result, total = _labels(job, record, threshold, split, stash)
    if np.iinfo(out.dtype).max < total:
        raise ValueError(f"out has dtype {out.dtype}; {total} objects need a wider integer dtype")
    writes = {}
    for ij, block in blocks.items():
        if ij not in done:
            part = result[block[0] : block[1], block[2] : block[3]]
            writes[ij] = dask.delayed(write_block, pure=False)(out, part, block, 0)
    run_recording(out, fingerprint, done, writes)
    if stash is not None:
        stash.delete()
    return out


def _labels(job: BlockJob, record, threshold: float, split: float | None, stash=None):
    """The three passes: (a Dask array of the labels, the number of objects). With a
    ``stash``, the first passes are written there (those of its finished blocks read)."""
    import dask
    import dask.array as da

    regions, shape = record.regions, job.shape
    blocks = dict(job.blocks())
    stashed = stash.done if stash is not None else set()
    first = {}
    for ij, block in blocks.items():
        if ij in stashed:
            continue
        grown = _grow(block, regions.halo, shape)
        p = job.probability_task(grown)
        first[ij] = dask.delayed(_first_pass, nout=3)(
            p, block, grown, shape, regions, record.decode, threshold, split
        )
    if stash is None:
        first = dict(zip(first, dask.persist(*first.values())))
        metas = dict(zip(first, dask.compute(*[f[1] for f in first.values()])))
    else:
        save = dask.delayed(stash.save, pure=False)
        stash.run({ij: save(ij, blocks[ij], f) for ij, f in first.items()})
        metas = {ij: stash.meta(ij, block) for ij, block in blocks.items()}
        first = {
            ij: (dask.delayed(stash.local)(block), None, dask.delayed(stash.pieces)(ij))
            for ij, block in blocks.items()
        }
    grid = (len(job.chunks[0]), len(job.chunks[1]))
    group, base = _merge(metas, grid, diagonal=regions.connectivity == 2)
    offsets, total = {}, 0
    for ij in sorted(metas):
        offsets[ij] = total
        total += metas[ij]["n"]
    lookups, pastes = dict.fromkeys(blocks), {ij: [] for ij in blocks}
    if regions.whole:  # a merged region is one object
        for ij, meta in metas.items():
            nodes = base[ij] + np.arange(1, len(meta["boxes"]) + 1)
            lookups[ij] = np.concatenate([[0], total + 1 + group[nodes]]).astype(np.int64)
        total += int(group.max()) + 1 if len(group) else 0
    else:
        merged = _decode_merged(job, record, threshold, split, metas, group, base, first)
        for box, labels in merged:
            n = int(labels.max(initial=0))
            labels[labels > 0] += total
            total += n
            for ij, (r0, r1, c0, c1) in blocks.items():
                if box[0] < r1 and box[1] > r0 and box[2] < c1 and box[3] > c0:
                    pastes[ij].append((box, labels))
    rows = []
    for ij, block in blocks.items():
        if ij[1] == 0:
            rows.append([])
        task = dask.delayed(_final_block)(first[ij][0], offsets[ij], lookups[ij], pastes[ij], block)
        size = (block[1] - block[0], block[3] - block[2])
        rows[-1].append(da.from_delayed(task, size, np.int64))
    return da.block(rows), total


def _decode_merged(job, record, threshold, split, metas, group, base, first) -> list:
    """``(box, labels)`` of every merged cut region, each decoded whole (in parallel)."""
    import dask

    n_groups = int(group.max()) + 1 if len(group) else 0
    boxes, seeds = [None] * n_groups, [None] * n_groups
    members = [[] for _ in range(n_groups)]
    for ij, meta in metas.items():
        for k, (box, seed) in enumerate(zip(meta["boxes"], meta["seeds"]), start=1):
            g = group[base[ij] + k]
            members[g].append((first[ij][2], k))
            old = boxes[g] or box
            boxes[g] = (
                min(old[0], box[0]),
                max(old[1], box[1]),
                min(old[2], box[2]),
                max(old[3], box[3]),
            )
            seeds[g] = seeds[g] or seed
    tasks = []
    for box, seed, parts in zip(boxes, seeds, members):
        grown = _grow(box, record.regions.halo, job.shape)
        tasks.append(
            dask.delayed(_decode_region)(
                grown, box, seed, record.regions, record.decode, threshold, split, *parts
            )
        )
    return list(zip(boxes, dask.compute(*tasks)))
