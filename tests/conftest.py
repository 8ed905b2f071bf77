"""Shared fixtures: crafted datasets in the real layouts, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_voc(root: Path, train: dict[str, np.ndarray], val: dict[str, np.ndarray]) -> Path:
    """A VOC 2012 layout holding the given label maps (and grey JPEGs of the same size)."""
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, label in {**train, **val}.items():
        height, width = label.shape
        Image.new("RGB", (width, height), (120, 110, 100)).save(root / "JPEGImages" / f"{name}.jpg")
        png = Image.fromarray(label, mode="P")
        png.putpalette([v for i in range(256) for v in (i, i, i)])
        png.save(root / "SegmentationClassAug" / f"{name}.png")
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("".join(f"{n}\n" for n in train))
    (lists / "val.txt").write_text("".join(f"{n}\n" for n in val))
    return root


def label_with(*classes: int, size: int = 8) -> np.ndarray:
    """An 8x8 label map holding exactly the given values (one stripe each, rest background)."""
    label = np.zeros((size, size), dtype=np.uint8)
    for row, value in enumerate(classes):
        label[row % size, :] = value
    return label


@pytest.fixture
def crafted_voc(tmp_path: Path) -> Path:
    """Seven training images A-G and three validation images with hand-chosen classes."""
    train = {
        "A": label_with(0, 1, 255), "B": label_with(0, 16, 255), "C": label_with(0, 2, 16),
        "D": label_with(0, 16, 18), "E": label_with(0, 17, 20, 255), "F": label_with(0, 255),
        "G": label_with(0, 3, 19),
    }  # fmt: skip
    val = {"V1": label_with(0, 4), "V2": label_with(0, 17, 255), "V3": label_with(0, 255)}
    return write_voc(tmp_path / "voc", train, val)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """A real single-node Slurm (+ slurmdbd, MariaDB, munge) for the session, state under a
    pytest tmp folder, stopped after. Skips when Slurm is not installed, except in CI (CI=true),
    where the Slurm tests must run: `.ci/run` installs the packages first."""
    import os

    from tests.slurm_cluster import LocalSlurm, missing

    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the local Slurm cannot start: {why}")
        pytest.skip(f"no local Slurm: {why}")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.startup_seconds = cluster.start()
        print(f"\nlocal Slurm up in {cluster.startup_seconds:.1f} s")
        yield cluster
    finally:
        cluster.stop()
