"""Joint image/mask transforms (torchvision.transforms.v2; masks are resized with nearest).

Training: RandomResizedCrop(crop, scale 0.5-2.0) + horizontal flip, as MiB/SDR. Scales above 1
cannot be cropped from the image, so torchvision falls back to the whole image after its ten
tries; that is also what the reference code did. Evaluation: Resize(short side = crop) +
CenterCrop(crop) (the field's convention) or full images.

Samples stay uint8 until they reach the device: `normalize` applies the ImageNet normalisation to
whole batches there, which moves a quarter of the bytes to a GPU and costs a fraction of a
per-sample float conversion on the CPU.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(crop: int) -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(crop, scale=(0.5, 2.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
    ])


def eval_transform(crop: int, mode: str = "center") -> v2.Compose:
    """`center`: short side resized to `crop`, then the central crop x crop; `full`: as is."""
    if mode == "full":
        return v2.Compose([v2.ToImage()])
    return v2.Compose([v2.Resize(crop, antialias=True), v2.CenterCrop(crop), v2.ToImage()])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) batch -> float32, ImageNet mean/std, on the batch's device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean).div_(std)
