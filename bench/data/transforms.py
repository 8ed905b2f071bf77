"""Joint image/label transforms on uint8 tensors, every random draw from the sample's own seed.

Training: a random resized crop to `crop` x `crop` (area 0.5-2.0 of the image, aspect 3/4-4/3)
and a horizontal flip with probability 1/2, as MiB and SDR train (fcdl94/MiB
`dataset/transform.py`, `RandomResizedCrop.get_params`: ten tries of a uniform area and a
log-uniform aspect, then the central crop with the aspect clamped; `RandomHorizontalFlip`).
Scales above 1 cannot be cropped from the image, so those tries fail and, after ten, the crop is
the whole image (its aspect clamped to 3/4-4/3).

Every draw of one sample comes from `random.Random(seed).random()`, `seed` being the sample's
(the loaders derive it from the run's seed, the step, the epoch and the sample's position in the
epoch): the same image gets the same crop whichever process, worker or rank decodes it. Only
`random()` is used, the one stream Python guarantees across versions for a given seed.

The image is resampled bilinearly with antialiasing (PIL's bilinear, which MiB used, also
averages when it shrinks); the label with the nearest pixel centre (PIL's NEAREST), so remapped
label values survive unchanged. Evaluation: Resize(short side = crop) + CenterCrop(crop) (the
field's convention) or full images.

Samples stay uint8 until they reach the device: `normalize` applies the ImageNet normalisation to
whole batches there, which moves a quarter of the bytes to a GPU and costs a fraction of a
per-sample float conversion on the CPU. Training labels stay uint8 too (an eighth of the bytes
of int64 through worker queues and host-to-device copies); the trainer widens them on the device.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALE = (0.5, 2.0)  # MiB/SDR: RandomResizedCrop(crop, (0.5, 2.0))
RATIO = (3 / 4, 4 / 3)  # torchvision's and MiB's default aspect range
CROP_TRIES = 10


def _integer(draw: Callable[[], float], count: int) -> int:
    """A uniform integer in 0..count-1 from one uniform draw in [0, 1)."""
    return min(int(draw() * count), count - 1)


def crop_box(height: int, width: int, draw: Callable[[], float],
             scale: tuple[float, float] = SCALE,
             ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a random resized crop of a height x width image:
    up to ten tries of area = uniform(scale) x image area and aspect (w/h) = exp(uniform(log
    ratio)), each draw taken from `draw()` in that order (area, aspect, then top, left for the
    try that fits); else the central crop with the image's aspect clamped to `ratio`."""
    area = height * width
    low, high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_TRIES):
        target = area * (scale[0] + (scale[1] - scale[0]) * draw())
        aspect = math.exp(low + (high - low) * draw())
        crop_width = round(math.sqrt(target * aspect))
        crop_height = round(math.sqrt(target / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = _integer(draw, height - crop_height + 1)
            left = _integer(draw, width - crop_width + 1)
            return top, left, crop_height, crop_width
    image_ratio = width / height
    if image_ratio < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        crop_width, crop_height = round(height * ratio[1]), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, h, w) -> uint8 (3, size, size), bilinear with antialiasing."""
    resized = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)
    return resized[0]


def resize_label(label: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (h, w) -> uint8 (size, size), the nearest source pixel centre."""
    return F.interpolate(label[None, None], size=(size, size), mode="nearest-exact")[0, 0]


class TrainTransform:
    """The random resized crop and flip of one training sample, drawn from its seed. Without a
    seed (a dataset indexed directly, as in tests) the seed comes from torch's global RNG."""

    def __init__(self, crop: int) -> None:
        self.crop = crop

    def __call__(self, image: torch.Tensor, label: np.ndarray,
                 seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        draw = random.Random(seed).random
        height, width = image.shape[-2:]
        top, left, crop_height, crop_width = crop_box(height, width, draw)
        flip = draw() < 0.5
        image = image[:, top:top + crop_height, left:left + crop_width]
        target = torch.from_numpy(np.ascontiguousarray(
            label[top:top + crop_height, left:left + crop_width]))
        if flip:  # before resizing: fewer pixels to move when the crop is enlarged
            image, target = image.flip(-1), target.flip(-1)
        return resize_image(image, self.crop), resize_label(target, self.crop)

    def __repr__(self) -> str:
        return f"TrainTransform(crop={self.crop}, scale={SCALE}, ratio=(3/4, 4/3), flip=0.5)"


class EvalTransform:
    """`center`: short side resized to `crop`, then the central crop x crop; `full`: as is.
    Deterministic: the seed is ignored. Labels come out int64."""

    def __init__(self, crop: int, mode: str = "center") -> None:
        self.mode = mode
        if mode == "full":
            self.pipeline = None
        else:
            self.pipeline = v2.Compose([v2.Resize(crop, antialias=True), v2.CenterCrop(crop)])

    def __call__(self, image: torch.Tensor, label: np.ndarray,
                 seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label)))
        if self.pipeline is not None:
            image, mask = self.pipeline(tv_tensors.Image(image), mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def train_transform(crop: int) -> TrainTransform:
    return TrainTransform(crop)


def eval_transform(crop: int, mode: str = "center") -> EvalTransform:
    return EvalTransform(crop, mode)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) batch -> float32, ImageNet mean/std, on the batch's device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean).div_(std)
