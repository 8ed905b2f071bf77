"""A step's torch dataset: remapped labels survive the joint transforms exactly."""

import numpy as np
import torch
from PIL import Image

from bench.data.dataset import StepDataset
from bench.data.layouts import Sample
from bench.data.transforms import eval_transform, normalize, train_transform
from protocols import get_protocol
from protocols.rules import test_lut as make_test_lut
from protocols.rules import train_lut as make_train_lut


def blocks(tmp_path):
    """A 40x30 image whose label has four quadrants: 0, 3, 16 and 255."""
    label = np.zeros((30, 40), dtype=np.uint8)
    label[:15, 20:] = 3
    label[15:, :20] = 16
    label[15:, 20:] = 255
    Image.fromarray(label, mode="L").save(tmp_path / "x.png")
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(tmp_path / "x.jpg")
    return Sample("x", tmp_path / "x.jpg", tmp_path / "x.png")


def test_train_items_carry_only_remapped_values(tmp_path):
    torch.manual_seed(0)
    dataset = StepDataset([blocks(tmp_path)], make_train_lut(get_protocol("voc-15-5"), 1),
                          train_transform(24))
    for _ in range(10):
        image, target = dataset[0]
        assert image.shape == (3, 24, 24) and image.dtype == torch.uint8
        # training labels stay uint8 until the device (an eighth of int64's bytes)
        assert target.shape == (24, 24) and target.dtype == torch.uint8
        assert set(target.unique().tolist()) <= {0, 16}  # 3 is old, 255 is void: background


def test_eval_center_crop_and_full(tmp_path):
    sample = blocks(tmp_path)
    lut = make_test_lut(get_protocol("voc-15-5"), 0)  # 16 unseen: ignored
    image, target = StepDataset([sample], lut, eval_transform(20))[0]
    assert image.shape == (3, 20, 20) and target.shape == (20, 20)
    assert set(target.unique().tolist()) == {0, 3, 255}
    image, target = StepDataset([sample], lut, eval_transform(20, "full"))[0]
    assert image.shape == (3, 30, 40)
    assert target[0, 0] == 0 and target[0, 39] == 3 and target[29, 0] == 255
    # ImageNet normalisation of a grey 200 pixel, per channel, applied to the batch
    normalised = normalize(image[None])
    assert normalised.dtype == torch.float32
    for channel, (mean, std) in enumerate([(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)]):
        assert abs(normalised[0, channel, 0, 0].item() - (200 / 255 - mean) / std) < 0.02


def test_truncated_image_is_named(tmp_path):
    import pytest

    from bench.errors import BenchError

    sample = blocks(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).save(
        sample.image, quality=95)
    sample.image.write_bytes(sample.image.read_bytes()[:300])
    dataset = StepDataset([sample], make_train_lut(get_protocol("voc-15-5"), 1))
    with pytest.raises(BenchError, match=r"x\.jpg is corrupt or truncated"):
        dataset[0]
