"""A torch Dataset of one protocol step: files chosen by the split index, labels remapped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from bench.data.images import read_image, read_label
from bench.data.layouts import Sample


class StepDataset(Dataset):
    """Images and remapped labels: `lut[raw label]` gives the target (a model channel or 255).

    The remapping is a 256-entry table applied before the geometric transforms; masks are only
    ever resized with nearest-neighbour, so remapped values survive unchanged.
    """

    def __init__(self, samples: Sequence[Sample], lut: np.ndarray,
                 transform: Callable | None = None) -> None:
        self.samples = list(samples)
        self.lut = lut
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.lut[read_label(sample.label)]
        mask = tv_tensors.Mask(torch.from_numpy(label))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask.as_subclass(torch.Tensor).long()
