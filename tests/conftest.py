"""Shared fixtures: tiny images, a tiny U-Net segmenter factory, fixed seeds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)  # noqa: NPY002  (code under test may use the legacy global RNG)
    torch.manual_seed(0)


def disks(shape, centers, radius):
    """Instance labels of disks (later disks overwrite earlier ones)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for i, (cy, cx) in enumerate(centers, 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return labels


def make_blobs(n, shapes=None, channels=None, seed=0):
    """Images of bright noisy disks on a dark background, with their instance labels."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        shape = shapes[i % len(shapes)] if shapes else (48, 48)
        centers = [(rng.integers(6, shape[0] - 6), rng.integers(6, shape[1] - 6)) for _ in range(3)]
        labels = disks(shape, centers, radius=5)
        image = (labels > 0) * 0.8 + rng.normal(0, 0.1, shape) + 0.1
        image = image.astype(np.float32)
        if channels:
            image = np.repeat(image[..., None], channels, axis=2)
        X.append(image)
        y.append(labels)
    return X, y


@pytest.fixture
def blobs():
    return make_blobs(6, shapes=[(48, 48), (40, 56), (37, 45)])


def tiny(cls=None, **kwargs):
    """A small, fast UNetSegmenter (depth 2, 4 base channels), or a subclass ``cls``."""
    from skunet import UNetSegmenter
    from skunet.models import UNet

    params = dict(
        module__depth=2,
        module__base_channels=4,
        patch_size=24,
        padding=4,
        max_epochs=2,
        batch_size=4,
        verbose=0,
        random_state=0,
    )
    if kwargs.get("module", UNet) is not UNet:  # another network: no U-Net arguments
        del params["module__depth"], params["module__base_channels"]
    params.update(kwargs)
    return (cls or UNetSegmenter)(**params)


@pytest.fixture
def tiny_segmenter():
    return tiny


@pytest.fixture
def vgg_weights_cache(tmp_path, monkeypatch):
    """What torchvision would have downloaded: a VGG16-BN state dict in a temporary
    ``TORCH_HOME`` cache (values shifted so that loading them is visible)."""
    import torchvision
    from torchvision.models import VGG16_BN_Weights

    features = torchvision.models.vgg16_bn().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys of the full model
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / os.path.basename(VGG16_BN_Weights.IMAGENET1K_V1.url))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return state


def membrane_cells(shape=(64, 64), step=16, seed=0):
    """A binary EM-like label: 1 = cells on a jittered grid, 0 = 1-3 px membranes."""
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, np.uint8)
    for r in range(step, shape[0], step):
        mask[r : r + rng.integers(1, 4), :] = 0
    for c in range(step, shape[1], step):
        mask[:, c : c + rng.integers(1, 4)] = 0
    return mask
