"""The learning-rate range test: train briefly while the rate grows exponentially.

Leslie Smith's test as fastai and ``torch-lr-finder`` run it: the loss of every batch is
recorded (exponentially smoothed), the run stops once it exceeds ``diverge`` times its
best, and the suggestion is the rate where the smoothed loss falls fastest. The test
itself (:func:`lr_range_test`) only sees a training step and a stream of batches;
:meth:`skunet.UNetSegmenter.lr_range_test` runs it on a copy of the estimator, so the
estimator's weights, optimizer and history are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LRRangeResult", "lr_range_test"]


@dataclass
class LRRangeResult:
    """What :meth:`UNetSegmenter.lr_range_test` found.

    Attributes
    ----------
    lrs : ndarray
        Learning rate of every batch that ran.
    losses : ndarray
        Smoothed training loss after each of those batches.
    raw_losses : ndarray
        The batches' losses as they were.
    suggestion : float or None
        The rate where the smoothed loss falls fastest (None when too few batches ran).
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray = field(repr=False)
    suggestion: float | None

    def plot(self, ax: Any = None):
        """Smoothed loss against learning rate (log axis), the suggestion marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"{self.suggestion:.2g}")
            ax.legend(title="steepest descent")
        return ax


def _suggestion(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """Rate of the steepest descent of the loss over log(lr), skipping the first 10 %."""
    skip = len(lrs) // 10
    if len(lrs) - skip < 5:
        return None
    slope = np.gradient(losses[skip:], np.log(lrs[skip:]))
    return float(lrs[skip + int(np.argmin(slope))])


def lr_range_test(
    step: Callable[[Any, float], float],
    batches: Iterable[Any],
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    num_iter: int = 100,
    smoothing: float = 0.05,
    diverge: float = 4.0,
) -> LRRangeResult:
    """Run ``step(batch, lr) -> loss`` on ``batches`` at exponentially growing rates.

    See :meth:`skunet.UNetSegmenter.lr_range_test`, which supplies a training step of a
    copy of the estimator and its training batches, epoch after epoch.

    Examples
    --------
    >>> losses = iter([1.0, 0.9, 0.5, 0.3, 0.25, 0.2, 0.3, 9.0])
    >>> found = lr_range_test(lambda batch, lr: next(losses), range(8), num_iter=8)
    >>> len(found.lrs), float(found.raw_losses[-1])
    (8, 9.0)
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr!r} and {end_lr!r}")
    if num_iter < 2:
        raise ValueError(f"num_iter must be at least 2, got {num_iter!r}")
    lrs = start_lr * (end_lr / start_lr) ** np.linspace(0, 1, num_iter)
    raw, smooth = [], []
    avg, best = 0.0, np.inf
    for lr, batch in zip(lrs, batches):
        loss = step(batch, float(lr))
        raw.append(loss)
        avg = smoothing * loss + (1 - smoothing) * avg
        smooth.append(avg / (1 - (1 - smoothing) ** len(raw)))  # bias-corrected
        best = min(best, smooth[-1])
        if not np.isfinite(loss) or smooth[-1] > diverge * best:
            break
    n = len(raw)
    lrs_run, losses = lrs[:n], np.asarray(smooth)
    finite = np.isfinite(losses)
    return LRRangeResult(
        lrs=lrs_run,
        losses=losses,
        raw_losses=np.asarray(raw),
        suggestion=_suggestion(lrs_run[finite], losses[finite]),
    )
