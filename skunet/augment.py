"""Joint random augmentation of training windows: image, labels (and so weight maps).

:class:`Augment` is what ``UNetSegmenter(augment=...)`` takes. Geometry is applied to the
image and its labels together: the square's 8 flips / rotations, the 2015 U-Net paper's
elastic deformation (random displacements on a coarse grid, bicubic in between; scipy,
since torchvision's ``ElasticTransform`` smooths a per-pixel field instead), and a small
random rotation / zoom (``torchvision.transforms.v2.RandomAffine`` on ``tv_tensors``,
nearest-neighbour for the ``Mask``). Intensity changes (Gaussian noise, brightness,
contrast, and each channel's own gain and offset, the colour shifts between stainings
and scanners) touch the image only. The estimator computes weight maps after augmentation,
so they follow the deformed cells.

All randomness comes from torch's generator: ``torch.manual_seed`` (the estimator's
``random_state``) makes a run reproducible, DataLoader workers included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from .tiling import IGNORE

__all__ = ["Augment", "elastic_deform", "flip_rotate", "random_int"]


def random_int(high: int) -> int:
    """A random integer in ``[0, high)`` from torch's generator (seeded by ``fit``)."""
    return int(torch.randint(high, ()).item()) if high > 1 else 0


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


def flip_rotate(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips / 90-degree rotations of a square window, at random."""
    k = random_int(8)
    if k & 4:
        image, labels = image[..., ::-1], labels[..., ::-1]
    rot = k & 3
    if rot:
        image = np.rot90(image, rot, axes=(-2, -1))
        labels = np.rot90(labels, rot, axes=(-2, -1))
    return image, labels


def elastic_deform(
    image: np.ndarray, labels: np.ndarray, sigma: float = 10.0, grid: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The U-Net paper's elastic deformation of ``(C, H, W)`` image and ``(H, W)`` labels.

    Displacements drawn from N(0, ``sigma``\\ :sup:`2`) pixels on a ``grid`` x ``grid``
    lattice are interpolated bicubically to every pixel; the image is resampled with
    cubic splines, the labels with nearest neighbours, both mirrored at the border.
    """
    h, w = labels.shape
    coarse = (torch.randn(2, grid, grid, dtype=torch.float64) * sigma).numpy()
    shift = [ndi.zoom(d, (h / grid, w / grid), order=3, mode="nearest") for d in coarse]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([rows + shift[0], cols + shift[1]]).astype(np.float32)
    warped = np.stack(
        [ndi.map_coordinates(ch, coords, order=3, mode="mirror") for ch in image]
    ).astype(image.dtype, copy=False)
    warped_labels = ndi.map_coordinates(labels, coords, order=0, mode="mirror")
    return warped, warped_labels


@dataclass
class Augment:
    """Random augmentation of a training window and its labels (``augment=`` parameter).

    Parameters
    ----------
    flips : bool, default=True
        Random flips and 90-degree rotations (all 8 symmetries of the square).
    elastic : float, default=0.0
        Standard deviation (pixels) of the elastic displacements; 0 turns them off. The
        U-Net paper: 10 pixels on a 3 x 3 grid.
    elastic_grid : int, default=3
        Side of the coarse displacement grid.
    degrees : float, default=0.0
        Random rotation within +-``degrees``.
    scale : float, default=0.0
        Random zoom within ``1 +- scale``.
    noise : float, default=0.0
        Standard deviation of additive Gaussian noise (images in [0, 1] units).
    brightness : float, default=0.0
        Random intensity shift within +-``brightness``.
    contrast : float, default=0.0
        Random contrast factor within ``1 +- contrast`` around each channel's mean.
    colour : float, default=0.0
        Each channel's own random gain within ``1 +- colour`` (around its mean) and shift
        within ``+-colour / 2``: the colour differences between stainings and scanners
        (RGB stain jitter, as in Tellez et al. 2019). Equal to ``contrast`` / ``brightness``
        on a gray image.

    Examples
    --------
    >>> aug = Augment(elastic=10, degrees=5, noise=0.02)
    >>> image, labels = np.zeros((1, 64, 64), np.float32), np.zeros((64, 64), np.int64)
    >>> [a.shape for a in aug(image, labels)]
    [(1, 64, 64), (64, 64)]
    """

    flips: bool = True
    elastic: float = 0.0
    elastic_grid: int = 3
    degrees: float = 0.0
    scale: float = 0.0
    noise: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    colour: float = 0.0

    def __post_init__(self) -> None:
        for name in ("elastic", "degrees", "scale", "noise", "brightness", "contrast", "colour"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Augment({name}={value!r}): expected a number >= 0")
        if self.scale >= 1:
            raise ValueError(f"Augment(scale={self.scale!r}): expected a value below 1")
        if not isinstance(self.elastic_grid, int) or self.elastic_grid < 2:
            raise ValueError(f"Augment(elastic_grid={self.elastic_grid!r}): expected >= 2")

    @classmethod
    def unet_paper(cls) -> Augment:
        """The 2015 paper's augmentation: elastic (3 x 3 grid, 10 px), flips and
        rotations, a small affine jitter and gray-value variations."""
        return cls(elastic=10.0, degrees=10.0, scale=0.05, noise=0.02, brightness=0.1, contrast=0.1)

    def _affine(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # imported here: importing torchvision costs seconds (it loads its detection
        # models and torch's compiler), which every ``import skunet`` would pay
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        transform = v2.RandomAffine(
            degrees=self.degrees,
            scale=(1 - self.scale, 1 + self.scale) if self.scale else None,
            interpolation=v2.InterpolationMode.BILINEAR,  # the Mask stays nearest
            fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE},
        )
        img, lab = transform(
            tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image))),
            tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(labels))),
        )
        return img.numpy(), lab.numpy()

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        # by hand, not ColorJitter: that clamps float images to [0, 1], and percentile-
        # normalised images are not bounded
        # contrast, brightness and colour: one gain around each channel's mean and one
        # shift per channel (the same image as applying them one after the other)
        c = len(image)
        gain, shift = np.ones((c, 1, 1), np.float32), np.zeros((c, 1, 1), np.float32)
        if self.contrast:
            gain *= _uniform(1 - self.contrast, 1 + self.contrast)
        if self.brightness:
            shift += _uniform(-self.brightness, self.brightness)
        if self.colour:
            gain *= torch.empty(c, 1, 1).uniform_(1 - self.colour, 1 + self.colour).numpy()
            shift += torch.empty(c, 1, 1).uniform_(-self.colour / 2, self.colour / 2).numpy()
        if self.contrast or self.brightness or self.colour:
            mean = image.mean(axis=(-2, -1), keepdims=True)
            image = (image - mean) * gain + mean + shift
        if self.noise:
            from torchvision.transforms import v2

            noisy = v2.GaussianNoise(sigma=self.noise, clip=False)(torch.from_numpy(image))
            image = noisy.numpy()
        return image.astype(np.float32, copy=False)

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment a ``(C, H, W)`` float image and its ``(H, W)`` integer labels."""
        if self.flips:
            image, labels = flip_rotate(image, labels)
        if self.elastic:
            image, labels = elastic_deform(
                np.ascontiguousarray(image),
                np.ascontiguousarray(labels),
                self.elastic,
                self.elastic_grid,
            )
        if self.degrees or self.scale:
            image, labels = self._affine(image, labels)
        if self.noise or self.brightness or self.contrast or self.colour:
            image = self._intensity(np.array(image, dtype=np.float32))
        return image, labels
