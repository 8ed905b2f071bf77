"""Joint image/mask transforms (torchvision.transforms.v2; masks are resized with nearest).

Training: RandomResizedCrop(crop, scale 0.5-2.0) + horizontal flip + ImageNet normalisation, as
MiB/SDR. Scales above 1 cannot be cropped from the image, so torchvision falls back to the whole
image after its ten tries; that is also what the reference code did. Evaluation: Resize(short side
= crop) + CenterCrop(crop) (the field's convention) or full images.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_tensors() -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def train_transform(crop: int) -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(crop, scale=(0.5, 2.0), antialias=True),
        v2.RandomHorizontalFlip(),
        *_to_tensors(),
    ])


def eval_transform(crop: int, mode: str = "center") -> v2.Compose:
    """`center`: short side resized to `crop`, then the central crop x crop; `full`: as is."""
    if mode == "full":
        return v2.Compose(_to_tensors())
    return v2.Compose([v2.Resize(crop, antialias=True), v2.CenterCrop(crop), *_to_tensors()])
