"""``AcceleratedUNetSegmenter``: mixed precision and several GPUs via Hugging Face Accelerate.

skorch's :class:`~skorch.hf.AccelerateMixin` hands the network, optimizer, learning-rate
scheduler and data loaders to an ``accelerate.Accelerator``, which places them on the
devices, wraps the network for distributed data parallel training when the script runs
under ``accelerate launch``, and applies mixed precision. Everything else is
:class:`~skunet.UNetSegmenter`'s.

Examples
--------
>>> from accelerate import Accelerator
>>> seg = AcceleratedUNetSegmenter(accelerator=Accelerator(cpu=True), max_epochs=1)
>>> seg.device is None  # the accelerator places the tensors
True
"""

from __future__ import annotations

from skorch.hf import AccelerateMixin

from .estimator import UNetSegmenter

__all__ = ["AcceleratedUNetSegmenter"]


class AcceleratedUNetSegmenter(AccelerateMixin, UNetSegmenter):
    """:class:`~skunet.UNetSegmenter` trained through an ``accelerate.Accelerator``.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        E.g. ``Accelerator(mixed_precision="bf16")``; under ``accelerate launch`` it
        trains on every GPU of the launch (data parallel, one process per GPU).
    device : None
        Leave device placement to the accelerator.
    unwrap_after_train : bool, default=True
        Restore the plain network after ``fit`` (needed to pickle or ``save``).
    **kwargs
        Any :class:`~skunet.UNetSegmenter` parameter.
    """
