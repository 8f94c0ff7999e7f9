"""Where and in what precision the network runs: the device, channels-last memory, and
mixed-precision training and prediction for skorch nets (the ``autocast`` parameter).

The precision policy is :func:`autocast_dtype` (what ``autocast`` means on a device,
``"auto"`` by :func:`native_bfloat16`). :class:`MixedPrecisionMixin` runs the network's
forward pass under ``torch.autocast`` in that dtype; losses, scores and weights stay
float32. Training in float16 scales the loss with a ``torch.amp.GradScaler`` (one per
optimizer initialisation) and unscales the gradients before callbacks see them; bfloat16
needs no scaling.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch

from .models import UNet, VGG16UNet

__all__ = ["MixedPrecisionMixin", "autocast_context", "autocast_dtype", "native_bfloat16"]


def autocast_dtype(device: str | torch.device, setting: bool | str) -> torch.dtype | None:
    """The dtype the estimator's ``autocast`` setting runs the network in on ``device``
    (None: full precision). True is bfloat16 on the CPU and float16 on CUDA, ``"auto"``
    bfloat16 where the hardware has it (see :func:`native_bfloat16`), another string
    names the dtype.

    >>> autocast_dtype("cpu", True), autocast_dtype("cuda", True), autocast_dtype("cpu", False)
    (torch.bfloat16, torch.float16, None)
    """
    device = torch.device(device)
    if setting == "auto":
        setting = "bfloat16" if native_bfloat16(device) else False
    if not setting:
        return None
    if isinstance(setting, str):
        return getattr(torch, setting)
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast_context(device: str | torch.device, setting: bool | str):
    """``torch.autocast`` for the estimator's ``autocast`` setting (a no-op when it
    resolves to full precision; see :func:`autocast_dtype`)."""
    device = torch.device(device)
    dtype = autocast_dtype(device, setting)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@functools.cache
def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or
    a CPU with AVX-512 BF16 or AMX (read from ``/proc/cpuinfo``; False elsewhere, where
    bfloat16 would be emulated and slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class MixedPrecisionMixin:
    """For a skorch ``NeuralNet`` subclass with ``device``, ``channels_last`` and
    ``autocast``: it says where the network runs (``_device()``) and in which memory
    format (``_channels_last()``), and overrides ``infer``, ``initialize_optimizer``,
    ``train_step_single`` and ``_step_optimizer``."""

    def _device(self) -> torch.device:
        """``device``, or where the network's weights are when something else places
        them (``device=None``, e.g. Hugging Face Accelerate)."""
        if self.device is not None:
            return torch.device(self.device)
        module = getattr(self, "module_", None)
        first = next(module.parameters(), None) if module is not None else None
        return first.device if first is not None else torch.device("cpu")

    def _channels_last(self) -> bool:
        if self.channels_last is None:  # on for the networks known to support it
            own = (UNet, VGG16UNet)
            return self.module in own or isinstance(self.module, own)
        return bool(self.channels_last)

    def infer(self, x, **fit_params):
        if self._channels_last() and isinstance(x, torch.Tensor):
            x = x.to(self._device()).contiguous(memory_format=torch.channels_last)
        if not self.autocast:
            return super().infer(x, **fit_params)
        with autocast_context(self._device(), self.autocast):
            y = super().infer(x, **fit_params)
        return y.float() if isinstance(y, torch.Tensor) else y

    def initialize_optimizer(self, *args, **kwargs):
        self.grad_scaler_ = None  # a new optimizer starts a new loss scale
        return super().initialize_optimizer(*args, **kwargs)

    def _grad_scaler(self) -> torch.amp.GradScaler | None:
        """Loss scaling for float16 training (created on first use, per fit)."""
        if autocast_dtype(self._device(), self.autocast) != torch.float16:
            return None
        if self.grad_scaler_ is None:
            self.grad_scaler_ = torch.amp.GradScaler(self._device().type)
        return self.grad_scaler_

    def train_step_single(self, batch, **fit_params):
        scaler = self._grad_scaler()
        if scaler is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = batch
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        # callbacks' on_grad_computed (e.g. gradient clipping) see the true gradients
        for name in self._optimizers:
            scaler.unscale_(getattr(self, name + "_"))
        return {"loss": loss, "y_pred": y_pred}

    def _step_optimizer(self, step_fn):
        scaler = self._grad_scaler()
        if scaler is None or step_fn is None:
            return super()._step_optimizer(step_fn)
        step_fn()  # GradScaler.step takes no closure: one forward / backward, then step
        for name in self._optimizers:
            scaler.step(getattr(self, name + "_"))
        scaler.update()
