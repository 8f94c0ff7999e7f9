"""The napari plugin (``pip install "skunet[napari]"``): a Segment widget that runs a
pretrained or saved model on an image layer in a worker thread and adds its instances,
classes or probabilities; the bundled nuclei sample as sample data; and a reader that
opens ``.skunet`` model files in the widget.

The manifest (``napari.yaml``) is registered through the ``napari.manifest`` entry
point; napari imports these modules only when a contribution is used.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__: list[str] = []


def _import_triton_apart() -> None:
    """Import Triton (shipped with Linux CUDA builds of torch) with its own symbols first.

    Every torch optimizer, which loading a model creates, imports ``torch._dynamo`` and
    so ``triton``. Its library carries its own LLVM; loaded after napari's canvas has
    made an OpenGL context on Mesa's LLVM drivers (llvmpipe on machines without a GPU
    or under Xvfb, radeonsi on AMD GPUs), it binds to Mesa's LLVM and the process
    crashes (a segmentation fault: pytorch/pytorch#129100 is the same with pygame).
    ``RTLD_DEEPBIND`` makes it use its own. Nothing happens where Triton is absent or
    already imported.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or "triton" in sys.modules or not importlib.util.find_spec("triton"):
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    finally:
        sys.setdlopenflags(flags)


_import_triton_apart()
