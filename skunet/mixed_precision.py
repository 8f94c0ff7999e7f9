"""Mixed-precision training and prediction for skorch nets (the ``autocast`` parameter).

:class:`MixedPrecisionMixin` runs the network's forward pass under ``torch.autocast`` in
the dtype that :func:`skunet.inference.autocast_dtype` resolves from the net's
``autocast`` setting; losses, scores and weights stay float32. Training in float16
scales the loss with a ``torch.amp.GradScaler`` (one per optimizer initialisation) and
unscales the gradients before callbacks see them; bfloat16 needs no scaling.
"""

from __future__ import annotations

import torch

from .inference import autocast_context, autocast_dtype

__all__ = ["MixedPrecisionMixin"]


class MixedPrecisionMixin:
    """For a skorch ``NeuralNet`` subclass with ``autocast``, ``_device()`` and
    ``_channels_last()``; it overrides ``infer``, ``initialize_optimizer``,
    ``train_step_single`` and ``_step_optimizer``."""

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
