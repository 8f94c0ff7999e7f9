"""Where a block-wise instance prediction into Zarr keeps its first pass, so that a run
killed part-way resumes without predicting finished blocks again.

Instance labels need every block's first pass (:mod:`skunet.prediction.block_instances`) before any
block's final ids are known. Written into a Zarr output, each block's first pass (its
local labels, the label strips along its sides, its cut regions' boxes and seeds, and,
for decoders that decode merged regions again, the probabilities around them) is saved
in a *stash*, a Zarr group beside the output, and the block is recorded as finished
only after all of it is written. A run of the same job into the same output reads the
finished blocks from the stash and computes only the others; the merge is redone (it
is small), then the final blocks are written into the output and recorded there as
the probabilities are (:func:`skunet.prediction.blocks.run_recording`). Once every block is
final the stash is deleted.

The stash of an array ``name`` inside a group is the group's member
``name.skunet-partial``; of an array at the root of a folder ``a.zarr``, the folder
``a.zarr.skunet-partial`` beside it. Other stores (memory, zip) get no stash: their
instances are computed in one go, as for a Dask output.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .blocks import RECORD, run_recording

__all__ = ["SUFFIX", "Stash"]

SUFFIX = ".skunet-partial"
"""What a stash's name adds to its output's name."""


class Stash:
    """The first pass of one block-wise instance prediction, kept in a Zarr group.

    Use :meth:`Stash.beside` to open (or start) the stash of an output array.
    """

    def __init__(self, store: Any, path: str, fingerprint: str = "", folder: str | None = None):
        self.store, self.path, self.folder = store, path, folder
        self.fingerprint = fingerprint

    # ------------------------------------------------------------------ where
    @classmethod
    def of(cls, out: Any, fingerprint: str = "") -> Stash | None:
        """Where the stash of the Zarr array ``out`` is (it may not exist); None for
        stores that cannot hold one (see the module's description)."""
        from zarr.storage import LocalStore

        if out.path:
            parent, _, name = out.path.rpartition("/")
            return cls(out.store, f"{parent}/{name}{SUFFIX}".lstrip("/"), fingerprint)
        if isinstance(out.store, LocalStore):
            root = Path(out.store.root)
            folder = str(root.with_name(root.name + SUFFIX))
            return cls(LocalStore(folder), "", fingerprint, folder)
        return None

    @classmethod
    def beside(cls, out: Any, fingerprint: str, chunks: tuple, resume: bool) -> Stash | None:
        """The stash of the Zarr array ``out`` for the job ``fingerprint``: with
        ``resume`` (``out`` records a run of this job), the one that run left; else, or
        when the stash holds another job, a new, empty one. None for stores that cannot
        hold one."""
        stash = cls.of(out, fingerprint)
        if stash is None:
            return None
        group = stash._group("a")
        if not resume or dict(group.attrs).get(RECORD, {}).get("job") != fingerprint:
            stash.delete()
            group = stash._group("w")
            group.attrs[RECORD] = {"job": fingerprint, "done": []}
            shape = tuple(out.shape[-2:])
            group.create_array("local", shape=shape, chunks=chunks, dtype="i4", fill_value=0)
        return stash

    def exists(self) -> bool:
        """Whether the stash is there (a killed run of instances left it)."""
        import zarr

        try:
            self._group()
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            return False
        return True

    def _group(self, mode: str = "r"):
        import zarr

        return zarr.open_group(store=self.store, path=self.path, mode=mode)

    @property
    def done(self) -> set[tuple[int, int]]:
        """The blocks whose first pass is stashed."""
        return {tuple(ij) for ij in self._group().attrs[RECORD]["done"]}

    # ------------------------------------------------------------------ first pass
    def save(self, ij: tuple[int, int], block: tuple, first: tuple) -> None:
        """Write one block's first pass ``(local, meta, pieces)`` (on a worker)."""
        local, meta, pieces = first
        group = self._group("r+")
        attributes = {"n": meta["n"], "pieces": len(pieces)}
        own = group.create_group(f"{ij[0]}_{ij[1]}", overwrite=True, attributes=attributes)
        own.create_array("sides", data=np.concatenate(meta["sides"]).astype(np.int32))
        cuts = np.array([[*b, *s] for b, s in zip(meta["boxes"], meta["seeds"])], np.int64)
        own.create_array("cuts", data=cuts.reshape(-1, 6))
        for k, (box, piece) in enumerate(pieces, start=1):
            own.create_array(f"p{k}", data=piece, attributes={"box": [int(v) for v in box]})
        r0, r1, c0, c1 = block
        group["local"][r0:r1, c0:c1] = local

    def run(self, saves: dict) -> None:
        """Compute the delayed :meth:`save` of every block in ``saves``, recording each."""
        run_recording(self._group("r+"), self.fingerprint, self.done, saves)

    def meta(self, ij: tuple[int, int], block: tuple) -> dict:
        """One stashed block's ``meta`` as the first pass returned it."""
        own = self._group()[f"{ij[0]}_{ij[1]}"]
        h, w = block[1] - block[0], block[3] - block[2]
        sides = np.split(own["sides"][:], np.cumsum([w, w, h]))
        cuts = own["cuts"][:]
        return {
            "n": int(own.attrs["n"]),
            "sides": tuple(sides),
            "boxes": [tuple(int(v) for v in c[:4]) for c in cuts],
            "seeds": [tuple(int(v) for v in c[4:]) for c in cuts],
        }

    def local(self, block: tuple) -> np.ndarray:
        """One block's stashed local labels."""
        r0, r1, c0, c1 = block
        return self._group()["local"][r0:r1, c0:c1]

    def pieces(self, ij: tuple[int, int]) -> list:
        """One block's stashed ``(box, probabilities)`` of its cut regions."""
        own = self._group()[f"{ij[0]}_{ij[1]}"]
        found = [own[f"p{k}"] for k in range(1, int(own.attrs["pieces"]) + 1)]
        return [(tuple(piece.attrs["box"]), piece[:]) for piece in found]

    def delete(self) -> None:
        """Remove the stash (once every block is final)."""
        import zarr

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        parent, _, name = self.path.rpartition("/")
        group = zarr.open_group(store=self.store, path=parent, mode="r+")
        if name in group:
            del group[name]
