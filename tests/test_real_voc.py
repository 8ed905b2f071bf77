"""Training images per step on real Pascal VOC (train_aug 10,582 / val 1,449).

The expected numbers are those of the reference split files of MiB/SDR. This test needs a real
VOC root (`CSS_BENCH_VOC_ROOT=/path/to/VOC2012`); without one it skips and says so.
"""

import os

import pytest

from bench.data.sources import resolve_source
from protocols import get_protocol

ROOT = os.environ.get("CSS_BENCH_VOC_ROOT")
pytestmark = pytest.mark.skipif(
    not ROOT, reason="no real Pascal VOC here: set CSS_BENCH_VOC_ROOT to a VOC 2012 root with "
    "SegmentationClassAug and train_aug.txt to check the reference split counts")

TRAIN_COUNTS = {
    "voc-19-1-disjoint": [10034, 548],
    "voc-19-1": [10410, 548],
    "voc-15-5-disjoint": [8437, 2145],
    "voc-15-5": [9568, 2145],
    "voc-15-1-disjoint": [8437, 378, 299, 420, 500, 548],
    "voc-15-1": [9568, 487, 299, 491, 500, 548],
}
TEST_COUNTS_15_1 = [1240, 1277, 1329, 1353, 1421, 1449]


@pytest.fixture(scope="module")
def index():
    source = resolve_source("voc", ROOT)
    assert len(source.samples("train")) == 10582
    assert len(source.samples("val")) == 1449
    return source.index()


@pytest.mark.parametrize("name", TRAIN_COUNTS)
def test_training_images_per_step(index, name):
    protocol = get_protocol(name)
    counts = [len(index.select(protocol, t, "train")) for t in range(protocol.num_steps)]
    assert counts == TRAIN_COUNTS[name]


def test_sequential_uses_the_disjoint_images(index):
    disjoint, sequential = get_protocol("voc-15-1-disjoint"), get_protocol("voc-15-1-sequential")
    for step in range(6):
        assert index.select(disjoint, step, "train") == index.select(sequential, step, "train")


def test_test_images_per_step(index):
    protocol = get_protocol("voc-15-1")
    assert [len(index.select(protocol, t, "val")) for t in range(6)] == TEST_COUNTS_15_1
