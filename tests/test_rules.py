"""Per-step filtering and remapping on crafted label sets, counts worked out by hand."""

import numpy as np
import pytest

from protocols import get_protocol
from protocols.rules import test_lut as make_test_lut
from protocols.rules import test_mask as select_test
from protocols.rules import train_lut as make_train_lut
from protocols.rules import train_mask as select_train

# A crafted VOC mask holding background, an old class (3), a new class of step 1 of 15-5 (16),
# a future class of 15-1 step 1 (18) and void.
MASK = np.array([[0, 3, 16], [18, 255, 0]], dtype=np.uint8)


def presence(*images: set[int], labels: int = 21) -> np.ndarray:
    matrix = np.zeros((len(images), labels + 1), dtype=bool)
    for row, classes in enumerate(images):
        for c in classes:
            matrix[row, labels if c == 255 else c] = True
    return matrix


def test_overlap_training_labels_keep_only_new_classes_and_void_is_background():
    lut = make_train_lut(get_protocol("voc-15-5"), 1)
    assert lut[MASK].tolist() == [[0, 0, 16], [18, 0, 0]]
    lut = make_train_lut(get_protocol("voc-15-1"), 1)  # new = {16}; 18 is a future class
    assert lut[MASK].tolist() == [[0, 0, 16], [0, 0, 0]]


def test_disjoint_training_labels_are_remapped_like_overlap():
    lut = make_train_lut(get_protocol("voc-15-1-disjoint"), 3)  # new = {18}
    assert lut[MASK].tolist() == [[0, 0, 0], [18, 0, 0]]


def test_step0_training_labels():
    lut = make_train_lut(get_protocol("voc-15-1"), 0)
    assert lut[MASK].tolist() == [[0, 3, 0], [0, 0, 0]]


def test_void_as_background_knob_off_keeps_void_ignored():
    protocol = get_protocol("voc-15-5").with_knobs(void_as_background=False)
    assert make_train_lut(protocol, 1)[MASK].tolist() == [[0, 0, 16], [18, 255, 0]]


def test_sequential_keeps_old_labels_and_ignores_void():
    lut = make_train_lut(get_protocol("voc-15-5-sequential"), 1)
    assert lut[MASK].tolist() == [[0, 3, 16], [18, 255, 0]]
    lut = make_train_lut(get_protocol("voc-15-1-sequential"), 1)  # 18 not seen yet: ignored
    assert lut[MASK].tolist() == [[0, 3, 16], [255, 255, 0]]


@pytest.mark.parametrize("mode", ["", "-disjoint", "-sequential"])
def test_test_labels_ignore_unseen_classes_and_void(mode):
    protocol = get_protocol(f"voc-15-1{mode}")
    assert make_test_lut(protocol, 0)[MASK].tolist() == [[0, 3, 255], [255, 255, 0]]
    assert make_test_lut(protocol, 1)[MASK].tolist() == [[0, 3, 16], [255, 255, 0]]
    assert make_test_lut(protocol, 5)[MASK].tolist() == [[0, 3, 16], [18, 255, 0]]


def test_ade_other_is_background_in_training_and_ignored_at_test():
    protocol = get_protocol("ade-100-50")
    mask = np.array([[0, 7, 120, 140]], dtype=np.uint8)
    assert make_train_lut(protocol, 0)[mask].tolist() == [[0, 7, 0, 0]]
    assert make_train_lut(protocol, 1)[mask].tolist() == [[0, 0, 120, 140]]
    assert make_test_lut(protocol, 0)[mask].tolist() == [[255, 7, 255, 255]]
    assert make_test_lut(protocol, 1)[mask].tolist() == [[255, 7, 120, 140]]


def test_permuted_order_remaps_labels_to_channels():
    protocol = get_protocol("voc-15-1@order=3")  # step 1 adds label 12 as channel 16
    mask = np.array([[12, 9, 5]], dtype=np.uint8)
    assert make_train_lut(protocol, 1)[mask].tolist() == [[16, 0, 0]]
    assert make_test_lut(protocol, 1)[mask].tolist() == [[16, 1, 255]]
    assert make_test_lut(protocol, 2)[mask].tolist() == [[16, 1, 17]]


# Crafted label sets of seven images for voc-15-1 (base 0-15, then 16, 17, 18, 19, 20):
IMAGES = presence(
    {0, 1, 255},        # A: base only
    {0, 16, 255},       # B: step-1 class alone
    {0, 2, 16},         # C: step-1 class with a base class
    {0, 16, 18},        # D: step-1 class with a future class (18)
    {0, 17, 20, 255},   # E: steps 2 and 5
    {0, 255},           # F: background and void only
    {0, 3, 19},         # G: base + step-4 class
)  # fmt: skip


@pytest.mark.parametrize(
    "mode,step,expected",
    [
        ("", 0, "ACG"),  # overlap keeps any image with a step-0 foreground class
        ("-disjoint", 0, "A"),  # C has 16, D 16/18, G 19: future classes drop them
        ("", 1, "BCD"),
        ("-disjoint", 1, "BC"),  # D has the future class 18
        ("-sequential", 1, "BC"),
        ("", 2, "E"),
        ("-disjoint", 2, ""),  # E also has 20
        ("", 4, "G"),
        ("-disjoint", 4, "G"),
        ("", 5, "E"),
        ("-disjoint", 5, "E"),  # by step 5 all of E's classes are seen
    ],
)
def test_training_filter(mode, step, expected):
    keep = select_train(IMAGES, get_protocol(f"voc-15-1{mode}"), step)
    assert "".join("ABCDEFG"[i] for i in np.flatnonzero(keep)) == expected


@pytest.mark.parametrize("step,expected", [(0, "ACG"), (1, "ABCDG"), (2, "ABCDEG"), (5, "ABCDEG")])
def test_test_filter_needs_a_seen_foreground_class(step, expected):
    for mode in ("", "-disjoint", "-sequential"):
        keep = select_test(IMAGES, get_protocol(f"voc-15-1{mode}"), step)
        assert "".join("ABCDEFG"[i] for i in np.flatnonzero(keep)) == expected
