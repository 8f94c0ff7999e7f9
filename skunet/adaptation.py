"""A pretrained one-channel model as the start for images with more channels.

The fluorescence nuclei model learned what nuclei look like from hundreds of gray
images; in H&E or bright-field RGB the nuclei are the haematoxylin-stained, dark
purple objects. :func:`adapt_input` folds a fixed projection of the colour channels
into the model's first convolution, so that the network sees a gray image in which
those nuclei are bright, and returns a model ready to be trained on the new images
(``fit`` with ``warm_start``, or :func:`~skunet.pretrained.fine_tune`). On the H&E
benchmark's 10-minute proxy, training from the adapted nuclei model reached AJI 0.561
on the held-out tiles where the same minutes from scratch reached 0.519
(``benchmarks/results/he_nuclei_trials.json``; ``docs/pretrained.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["CHANNEL_WEIGHTS", "adapt_input"]


def _haematoxylin() -> tuple[float, float, float]:
    """The haematoxylin row of scikit-image's colour deconvolution (Ruifrok and Johnston,
    2001), linearised about white: optical density is ``-log(I)``, about ``1 - I`` near
    white, so the haematoxylin density falls linearly with each channel's intensity.
    Scaled so that white maps to -1 and black to 0 (the first convolution has no bias:
    a constant shift, which training absorbs into the batch normalisation after it)."""
    from skimage.color import hed_from_rgb

    h = -np.asarray(hed_from_rgb)[:, 0]
    return tuple(float(w) for w in h / -h.sum())


CHANNEL_WEIGHTS: dict[str, tuple[float, ...]] = {"haematoxylin": _haematoxylin()}
"""Named projections of an image's channels (each image percentile-normalised, as a
``normalize="percentile"`` model sees it) onto the one channel of a pretrained model:
``"haematoxylin"`` for H&E and bright-field RGB, nuclei bright as in fluorescence."""


def adapt_input(model: Any, channels: str | Sequence[float], device: str = "cpu"):
    """A copy of a fitted one-channel segmenter that takes ``len(channels)``-channel
    images, its first convolution seeing ``sum(w_c * channel_c)``.

    Parameters
    ----------
    model : str, path or UNetSegmenter
        A pretrained model's name (``"nuclei"``), a model file, or a fitted segmenter
        (not changed) with one input channel.
    channels : str or sequence of float
        A name in :data:`CHANNEL_WEIGHTS` (``"haematoxylin"`` for RGB H&E) or one weight
        per channel of the new images.
    device : str, default="cpu"
        Where a named model or file is loaded.

    Returns
    -------
    UNetSegmenter
        The same network with its first convolution's kernels ``k`` replaced by
        ``w_c * k`` for each input channel ``c``: before any training it answers on the
        projection as the base model answers on a gray image. Its history is empty (the
        base's epochs and best scores do not describe the new images) and
        ``adapted_`` records the base and the weights; train it with ``fit``
        (``warm_start=True`` keeps the weights) or :func:`~skunet.pretrained.fine_tune`.

    Raises
    ------
    ValueError
        An unknown name, weights that are not finite, a model that is not fitted or
        has more than one input channel, or a network without a convolution.

    Examples
    --------
    >>> import numpy as np
    >>> from skunet.presets import nuclei_segmenter
    >>> seg = nuclei_segmenter(module__depth=2, module__base_channels=4, max_epochs=1,
    ...                        train_split=None, verbose=0)
    >>> seg = seg.fit([np.random.rand(64, 64)], [np.zeros((64, 64), int)])
    >>> rgb = adapt_input(seg, "haematoxylin")
    >>> rgb.n_channels_in_, rgb.adapted_["weights"] == list(CHANNEL_WEIGHTS["haematoxylin"])
    (3, True)
    """
    from .estimator import UNetSegmenter
    from .pretrained import open_base

    if isinstance(channels, str):
        if channels not in CHANNEL_WEIGHTS:
            raise ValueError(
                f"channels={channels!r}: not one of {sorted(CHANNEL_WEIGHTS)}; "
                "or give one weight per channel"
            )
        name, weights = channels, np.asarray(CHANNEL_WEIGHTS[channels], float)
    else:
        name, weights = None, np.asarray(channels, float)
    if weights.ndim != 1 or weights.size < 1 or not np.isfinite(weights).all():
        raise ValueError(f"channels={channels!r}: need a name or finite weights, one per channel")
    if isinstance(model, UNetSegmenter) and not hasattr(model, "n_channels_in_"):
        raise ValueError("adapt_input needs a fitted segmenter (or a model's name or file)")
    seg, base = open_base(model, device=device)
    if seg.n_channels_in_ != 1:
        raise ValueError(
            f"adapt_input adapts one-channel models; {base} takes {seg.n_channels_in_}"
        )
    state = {k: v.detach().clone() for k, v in seg.module_.state_dict().items()}
    convolutions = (n for n, m in seg.module_.named_modules() if isinstance(m, torch.nn.Conv2d))
    first = next(convolutions, None)
    if first is None:
        raise ValueError(f"{base}: no convolution in its network to adapt")
    kernel = state[f"{first}.weight"]  # (out, 1, kh, kw)
    w = torch.as_tensor(weights, dtype=kernel.dtype)
    state[f"{first}.weight"] = kernel * w[None, :, None, None]
    if "in_channels" in seg.get_params_for("module"):
        seg.set_params(module__in_channels=int(weights.size))  # rebuilt below either way
    seg.n_channels_in_ = int(weights.size)
    seg.initialize_module()
    seg.module_.load_state_dict(state)
    seg.initialize_optimizer()
    seg.initialize_history()
    if hasattr(seg, "pretrained_"):
        del seg.pretrained_  # no longer the card's weights
    seg.adapted_ = {"base": base, "channels": name, "weights": weights.tolist()}
    return seg
