"""Readers of the real layouts and what they say when a layout is incomplete."""

import pytest

from bench.data.layouts import AdeLayout, VocLayout
from bench.data.sources import resolve_source
from bench.errors import BenchError


def test_voc_reader_reads_ids_and_pair_formats(crafted_voc):
    samples = VocLayout().samples(crafted_voc, "train")
    assert [s.name for s in samples] == list("ABCDEFG")
    assert samples[0].image == crafted_voc / "JPEGImages" / "A.jpg"
    assert samples[0].label == crafted_voc / "SegmentationClassAug" / "A.png"
    lists = crafted_voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    lists.write_text("/JPEGImages/B.jpg /SegmentationClassAug/B.png\n")
    (pair,) = VocLayout().samples(crafted_voc, "train")
    assert (pair.name, pair.image, pair.label) == (
        "B", crafted_voc / "JPEGImages" / "B.jpg", crafted_voc / "SegmentationClassAug" / "B.png")


def test_voc_root_may_be_the_devkit_parent(crafted_voc, tmp_path):
    parent = tmp_path / "datasets"
    (parent / "VOCdevkit").mkdir(parents=True)
    crafted_voc.rename(parent / "VOCdevkit" / "VOC2012")
    assert len(VocLayout().samples(parent, "val")) == 3
    assert VocLayout().problems(parent) == []


def test_complete_layout_has_no_problems(crafted_voc):
    assert VocLayout().problems(crafted_voc) == []


def test_missing_augmentation_names_sbd(crafted_voc):
    for path in (crafted_voc / "SegmentationClassAug").iterdir():
        path.unlink()
    (crafted_voc / "SegmentationClassAug").rmdir()
    (crafted_voc / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    problems = "\n".join(VocLayout().problems(crafted_voc))
    assert "SegmentationClassAug/ is missing" in problems and "SBD" in problems
    assert "train_aug.txt is missing" in problems


def test_missing_files_are_counted_with_examples(crafted_voc):
    (crafted_voc / "JPEGImages" / "C.jpg").unlink()
    (problem,) = VocLayout().problems(crafted_voc)
    assert problem.startswith("1 of 7 train image files are missing") and "C.jpg" in problem


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        resolve_source("voc", tmp_path / "nowhere")
    with pytest.raises(BenchError, match="CSS_BENCH_ADE_ROOT"):
        resolve_source("ade", None)


def test_protocol_and_dataset_must_agree(crafted_voc):
    with pytest.raises(BenchError, match="ADE protocol"):
        resolve_source("voc", crafted_voc, protocol_dataset="ade")


def test_ade_layout(tmp_path):
    from PIL import Image

    base = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        for folder in ("training", "validation"):
            (base / kind / folder).mkdir(parents=True)
    for stem, folder in (("ADE_train_00000002", "training"), ("ADE_train_00000001", "training"),
                         ("ADE_val_00000001", "validation")):
        Image.new("RGB", (4, 4)).save(base / "images" / folder / f"{stem}.jpg")
        Image.new("L", (4, 4)).save(base / "annotations" / folder / f"{stem}.png")
    layout = AdeLayout()
    assert layout.problems(tmp_path) == [] and layout.problems(base) == []
    train = layout.samples(tmp_path, "train")
    assert [s.name for s in train] == ["ADE_train_00000001", "ADE_train_00000002"]
    assert train[0].label == base / "annotations" / "training" / "ADE_train_00000001.png"
    (base / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    (problem,) = layout.problems(tmp_path)
    assert "1 of 1 val label files are missing" in problem


def test_ade_missing_folder_names_the_archive(tmp_path):
    (tmp_path / "ADEChallengeData2016" / "images").mkdir(parents=True)
    problems = AdeLayout().problems(tmp_path)
    assert len(problems) == 4 and all("ADEChallengeData2016.zip" in p for p in problems)
