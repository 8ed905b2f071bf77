"""A torch Dataset of one protocol step: files chosen by the split index, labels remapped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.images import read_image_tensor, read_label
from bench.data.layouts import Sample
from bench.errors import BenchError

# (uint8 image (3, H, W), remapped uint8 label (H, W), the sample's seed or None) -> sample
SampleTransform = Callable[[torch.Tensor, np.ndarray, int | None],
                           tuple[torch.Tensor, torch.Tensor]]


class StepDataset(Dataset):
    """Images and remapped labels: `lut[raw label]` gives the target (a model channel or 255).

    An item is asked for as `dataset[(index, seed)]`: the transform draws every random choice
    from `seed`, so a sample's crop depends on nothing but that pair (not on the process,
    worker or rank that decodes it). `dataset[index]` lets the transform draw its own seed.

    The remapping is a 256-entry table applied before the geometric transforms; labels are only
    ever resized with nearest-neighbour, so remapped values survive unchanged.
    """

    def __init__(self, samples: Sequence[Sample], lut: np.ndarray,
                 transform: SampleTransform | None = None, cache_bytes: int = 0) -> None:
        self.samples = list(samples)
        self.lut = lut
        self.transform = transform
        # Decoded files kept in memory up to `cache_bytes` (small images: decoding is
        # a third of the per-sample cost there).
        self._cache: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        self._cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.samples)

    def _decoded(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        decoded = read_image_tensor(sample.image), read_label(sample.label)
        if tuple(decoded[0].shape[-2:]) != decoded[1].shape:
            height, width = decoded[0].shape[-2:]
            raise BenchError(f"image {sample.image} is {width}x{height} px but its label "
                             f"{sample.label} is {decoded[1].shape[1]}x{decoded[1].shape[0]}; "
                             "replace one of them with a matching copy")
        size = decoded[0].numel() + decoded[1].size
        if size <= self._cache_left:
            self._cache[index] = decoded
            self._cache_left -= size
        return decoded

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, raw_label = self._decoded(index)
        label = self.lut[raw_label]
        if self.transform is not None:
            return self.transform(image, label, seed)
        return image, torch.from_numpy(label).long()
