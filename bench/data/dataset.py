"""A torch Dataset of one protocol step: files chosen by the split index, labels remapped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
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
                 transform: Callable | None = None, cache_bytes: int = 0) -> None:
        self.samples = list(samples)
        self.lut = lut
        self.transform = transform
        # Decoded files kept in memory up to `cache_bytes` (small datasets loaded in-process:
        # decoding is a third of the per-sample cost there).
        self._cache: dict[int, tuple[Image.Image, np.ndarray]] = {}
        self._cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.samples)

    def _decoded(self, index: int) -> tuple[Image.Image, np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        decoded = read_image(sample.image), read_label(sample.label)
        size = decoded[1].size * 4
        if size <= self._cache_left:
            self._cache[index] = decoded
            self._cache_left -= size
        return decoded

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, raw_label = self._decoded(index)
        label = self.lut[raw_label]
        mask = tv_tensors.Mask(torch.from_numpy(label))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask.as_subclass(torch.Tensor).long()
