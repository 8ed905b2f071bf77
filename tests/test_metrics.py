"""Tests for bench.metrics: confusion matrix, IoU, old/new/all in both conventions, hIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.metrics import (
    IGNORE_INDEX,
    ConfusionMatrix,
    StepScores,
    harmonic_iou,
    mean_iou,
    per_class_iou,
    step_scores,
)

# 3 x 4 crafted pair, 3 classes, two ignored pixels (one whose prediction is out of range).
TARGET = torch.tensor(
    [
        [0, 0, 1, 1],
        [2, 2, 2, 255],
        [0, 1, 255, 2],
    ]
)
PREDICTION = torch.tensor(
    [
        [0, 1, 1, 1],
        [2, 0, 2, 1],
        [0, 2, 255, 2],
    ]
)
# Counted by hand from the pairs (target, prediction) of the 10 labelled pixels:
# (0,0) x2, (0,1) x1, (1,1) x2, (1,2) x1, (2,2) x3, (2,0) x1.
EXPECTED = torch.tensor(
    [
        [2, 1, 0],
        [0, 2, 1],
        [1, 0, 3],
    ],
    dtype=torch.int64,
)


def naive_confusion(prediction: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    expected = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(target.ravel(), prediction.ravel(), strict=True):
        if t != IGNORE_INDEX:
            expected[t, p] += 1
    return expected


def test_confusion_matrix_on_crafted_pair() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION, TARGET)
    assert cm.matrix.dtype == torch.int64
    assert torch.equal(cm.matrix, EXPECTED)
    assert int(cm.matrix.sum()) == 10


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_input_dtypes_give_the_same_matrix(dtype: torch.dtype) -> None:
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION.clamp(max=2).to(dtype), TARGET.to(dtype))
    assert torch.equal(cm.matrix, EXPECTED)


def test_two_updates_equal_one_on_the_concatenation() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (4, 7, 9), generator=generator)
    target = torch.randint(0, 5, (4, 7, 9), generator=generator)
    target[target == 4] = IGNORE_INDEX
    split = ConfusionMatrix(5)
    split.update(pred[:1], target[:1])
    split.update(pred[1:], target[1:])
    whole = ConfusionMatrix(5)
    whole.update(pred.flatten(), target.flatten())
    assert torch.equal(split.matrix, whole.matrix)
    assert int(whole.matrix.sum()) == int((target != IGNORE_INDEX).sum())


def test_reset_and_merge() -> None:
    a = ConfusionMatrix(3)
    a.update(PREDICTION, TARGET)
    b = ConfusionMatrix(3)
    b.update(PREDICTION, TARGET)
    a.merge(b)
    assert torch.equal(a.matrix, 2 * EXPECTED)
    a.all_reduce()  # not distributed: a no-op
    assert torch.equal(a.matrix, 2 * EXPECTED)
    a.reset()
    assert int(a.matrix.abs().sum()) == 0
    with pytest.raises(ValueError, match="4-class"):
        a.merge(ConfusionMatrix(4))


def test_matrix_property_is_a_copy() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION, TARGET)
    cm.matrix.zero_()
    assert torch.equal(cm.matrix, EXPECTED)


@pytest.mark.parametrize("bad", [3, 7, 254, 256, 1000, -1])
def test_out_of_range_target_raises_naming_the_value(bad: int) -> None:
    target = TARGET.clone()
    target[2, 0] = bad
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=rf"target contains label {bad}\b"):
        cm.update(PREDICTION, target)
    assert int(cm.matrix.sum()) == 0  # nothing half-added


def test_out_of_range_target_in_uint8_raises() -> None:
    target = TARGET.clone()
    target[0, 0] = 200
    with pytest.raises(ValueError, match="target contains label 200"):
        ConfusionMatrix(3).update(PREDICTION.clamp(max=2).to(torch.uint8), target.to(torch.uint8))


@pytest.mark.parametrize("bad", [3, 5, -2])
def test_out_of_range_prediction_on_a_counted_pixel_raises(bad: int) -> None:
    pred = PREDICTION.clone()
    pred[0, 0] = bad
    with pytest.raises(ValueError, match=rf"prediction contains class {bad}\b"):
        ConfusionMatrix(3).update(pred, TARGET)


def test_shape_and_dtype_errors() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(PREDICTION, TARGET[:2])
    with pytest.raises(TypeError, match="float"):
        cm.update(PREDICTION.float(), TARGET)
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(255)
    cm.update(PREDICTION[:0], TARGET[:0])  # empty batch is fine
    assert int(cm.matrix.sum()) == 0


def test_state_dict_round_trip() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION, TARGET)
    state = cm.state_dict()
    assert state["matrix"].device.type == "cpu"
    restored = ConfusionMatrix(3)
    restored.load_state_dict(state)
    assert torch.equal(restored.matrix, EXPECTED)
    restored.update(PREDICTION, TARGET)  # keeps accumulating after a resume
    assert torch.equal(restored.matrix, 2 * EXPECTED)
    assert torch.equal(cm.matrix, EXPECTED)  # state was a copy
    with pytest.raises(ValueError, match="3 classes"):
        ConfusionMatrix(4).load_state_dict(state)


def test_device_handling_cpu() -> None:
    cm = ConfusionMatrix(3, device=torch.device("cpu"))
    assert cm.device == torch.device("cpu")
    cm.update(PREDICTION, TARGET)
    assert cm.matrix.device.type == "cpu"
    assert ConfusionMatrix(3, device="cpu").device.type == "cpu"


@pytest.mark.parametrize("n", [21, 151])
def test_update_matches_naive_numpy_on_random_data(n: int) -> None:
    rng = np.random.default_rng(n)
    target = rng.integers(0, n, size=(2, 37, 53))
    target[rng.random(target.shape) < 0.1] = IGNORE_INDEX
    pred = rng.integers(0, n, size=target.shape)
    cm = ConfusionMatrix(n)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    first_pred, first_target = torch.from_numpy(pred[:1]), torch.from_numpy(target[:1])
    cm.update(first_pred.to(torch.uint8), first_target.to(torch.uint8))
    expected = naive_confusion(pred, target, n) + naive_confusion(pred[:1], target[:1], n)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)


def test_per_class_iou_and_mean_by_hand() -> None:
    iou = per_class_iou(EXPECTED)
    assert iou.dtype == torch.float64
    # class 0: TP 2, FN 1, FP 1 -> 2/4; class 1: TP 2, FN 1, FP 1 -> 2/4;
    # class 2: TP 3, FN 1, FP 1 -> 3/5.
    assert iou.tolist() == pytest.approx([2 / 4, 2 / 4, 3 / 5])
    assert mean_iou(iou) == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert mean_iou(iou, [0, 2]) == pytest.approx(0.55)
    assert math.isnan(mean_iou(iou, []))


def test_classes_without_ground_truth_are_nan_and_skipped() -> None:
    # class 2 never in the ground truth but predicted once; class 3 absent everywhere.
    matrix = torch.tensor(
        [
            [3, 1, 1, 0],
            [0, 2, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    iou = per_class_iou(matrix)
    # class 0: 3 / (5 + 3 - 3) = 3/5; class 1: 2 / (2 + 3 - 2) = 2/3.
    assert iou[:2].tolist() == pytest.approx([3 / 5, 2 / 3])
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert mean_iou(iou) == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert math.isnan(mean_iou(iou, [2, 3]))
    with pytest.raises(ValueError, match="class 4"):
        mean_iou(iou, [4])


# 4 classes (0 = background); by hand: IoU 0 -> 8/10, 1 -> 3/5, 2 -> 2/7, 3 -> 1/4.
STEP_MATRIX = torch.tensor(
    [
        [8, 1, 1, 0],
        [0, 3, 0, 0],
        [0, 1, 2, 1],
        [0, 0, 2, 1],
    ]
)


def test_step_matrix_per_class_by_hand() -> None:
    # class 0: TP 8, GT 10, pred 8 -> 8/10; class 1: TP 3, GT 3, pred 5 -> 3/5;
    # class 2: TP 2, GT 4, pred 5 -> 2/7; class 3: TP 1, GT 3, pred 2 -> 1/4.
    assert per_class_iou(STEP_MATRIX).tolist() == pytest.approx([8 / 10, 3 / 5, 2 / 7, 1 / 4])


def test_step_scores_sdr_convention_keeps_background() -> None:
    scores = step_scores(STEP_MATRIX, old_classes=[0, 1], new_classes=[2, 3])
    assert isinstance(scores, StepScores)
    assert scores.background_in_old_all is True
    assert scores.old == pytest.approx(70.0)  # (80 + 60) / 2
    assert scores.new == pytest.approx(375 / 14)  # (200/7 + 25) / 2 = 26.7857...
    assert scores.all == pytest.approx(1355 / 28)  # (80 + 60 + 200/7 + 25) / 4 = 48.3929...
    assert scores.hiou == pytest.approx(10500 / 271)  # 2*70*(375/14) / (70 + 375/14) = 38.7454...
    assert scores.per_class == pytest.approx([80.0, 60.0, 200 / 7, 25.0])


def test_step_scores_mib_convention_drops_background() -> None:
    scores = step_scores(STEP_MATRIX, [0, 1], [2, 3], background_in_old_all=False)
    assert scores.background_in_old_all is False
    assert scores.old == pytest.approx(60.0)
    assert scores.new == pytest.approx(375 / 14)
    assert scores.all == pytest.approx(265 / 7)  # (60 + 200/7 + 25) / 3 = 37.8571...
    assert scores.hiou == pytest.approx(1000 / 27)  # 2*60*(375/14) / (60 + 375/14) = 37.0370...
    assert scores.per_class[0] == pytest.approx(80.0)  # per-class still reports background


def test_step_scores_empty_new_and_nan_handling() -> None:
    base = step_scores(STEP_MATRIX, old_classes=[0, 1, 2, 3], new_classes=[])
    assert math.isnan(base.new) and math.isnan(base.hiou)
    assert base.old == pytest.approx(base.all)
    # MiB convention with only background as old: old is empty -> NaN
    only_bg = step_scores(STEP_MATRIX, [0], [1], background_in_old_all=False)
    assert math.isnan(only_bg.old) and only_bg.new == pytest.approx(60.0)
    assert only_bg.all == pytest.approx(60.0)
    per_class_nan = step_scores(torch.zeros(3, 3, dtype=torch.int64), [0], [1, 2])
    assert all(math.isnan(v) for v in per_class_nan.per_class)
    with pytest.raises(ValueError, match="background"):
        step_scores(STEP_MATRIX, [1], [0, 2])
    with pytest.raises(ValueError, match="both old and new"):
        step_scores(STEP_MATRIX, [0, 1], [1, 2])


def test_harmonic_iou_literal_values_and_edges() -> None:
    assert harmonic_iou(50.0, 50.0) == pytest.approx(50.0)
    assert harmonic_iou(60.0, 30.0) == pytest.approx(40.0)  # 2*60*30/90
    assert harmonic_iou(80.0, 20.0) == pytest.approx(32.0)  # 3200/100
    assert harmonic_iou(70.0, 0.0) == 0.0
    assert harmonic_iou(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_iou(math.nan, 10.0))
    assert math.isnan(harmonic_iou(10.0, math.nan))
