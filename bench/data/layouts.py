"""The real on-disk layouts of Pascal VOC 2012 and ADE20K, and what to do when one is incomplete.

A layout turns a dataset root into (image, label) file pairs for a split. The embedded synthetic
datasets are written in these same layouts and read by these same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Sample:
    """One image and its label file; `name` is the id shown in split files and errors."""

    name: str
    image: Path
    label: Path


class VocLayout:
    """`JPEGImages/`, `SegmentationClassAug/` (or `SegmentationClass/`) and
    `ImageSets/Segmentation/` with `train_aug.txt` (10,582 ids) and `val.txt` (1,449 ids).
    The root may also be a folder holding `VOCdevkit/VOC2012` or `VOC2012`."""

    kind = "voc"
    list_files = {"train": "train_aug.txt", "val": "val.txt"}

    def resolve_root(self, root: Path) -> Path:
        for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
            if (candidate / "JPEGImages").is_dir():
                return candidate
        return root

    def problems(self, root: Path) -> list[str]:
        root = self.resolve_root(root)
        if not root.is_dir():
            return [f"the data root {root} does not exist; pass the folder that holds JPEGImages/"]
        found = []
        if not (root / "JPEGImages").is_dir():
            found.append(f"{root}/JPEGImages/ is missing: it comes with the VOC 2012 trainval "
                         "archive (VOCtrainval_11-May-2012.tar)")
        if not (root / "SegmentationClassAug").is_dir() and not (
            root / "SegmentationClass"
        ).is_dir():
            found.append(f"{root}/SegmentationClassAug/ is missing: the 10,582 train_aug label "
                         "maps come from the SBD augmentation (Hariharan et al. 2011), distributed "
                         "as SegmentationClassAug.zip; unzip it into the root")
        list_dir = root / "ImageSets" / "Segmentation"
        if not (list_dir / "train_aug.txt").is_file():
            found.append(f"{list_dir}/train_aug.txt is missing: it lists the 10,582 training ids "
                         "of the SBD augmentation; it ships with SegmentationClassAug (or as "
                         "train_aug.txt in the MiB/SDR repositories' data folder)")
        if not (list_dir / "val.txt").is_file():
            found.append(f"{list_dir}/val.txt is missing: it comes with the VOC 2012 trainval "
                         "archive")
        if found:
            return found
        for split in SPLITS:
            found += _missing_files(self.samples(root, split), split)
        return found

    def label_dir(self, root: Path, split: str) -> Path:
        augmented = root / "SegmentationClassAug"
        if augmented.is_dir() or split == "train":
            return augmented
        return root / "SegmentationClass"

    def samples(self, root: Path, split: str) -> list[Sample]:
        root = self.resolve_root(root)
        list_file = root / "ImageSets" / "Segmentation" / self.list_files[split]
        if not list_file.is_file():
            raise BenchError(f"split list {list_file} is missing; run `bench data check "
                             f"--dataset voc --root {root}` to see how to complete the layout")
        labels = self.label_dir(root, split)
        samples = []
        for line in list_file.read_text().split("\n"):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:  # the official format: one id per line
                name = fields[0]
                samples.append(Sample(name, root / "JPEGImages" / f"{name}.jpg",
                                      labels / f"{name}.png"))
            else:  # the SBD/MiB format: "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
                image, label = (root / f.lstrip("/") for f in fields[:2])
                samples.append(Sample(image.stem, image, label))
        return samples


class AdeLayout:
    """`ADEChallengeData2016/images/{training,validation}/*.jpg` with label maps of the same stem
    in `ADEChallengeData2016/annotations/{training,validation}/*.png` (values 0..150, 0 = other).
    The root may be the folder holding ADEChallengeData2016/ or that folder itself."""

    kind = "ade"
    folders = {"train": "training", "val": "validation"}

    def resolve_root(self, root: Path) -> Path:
        if (root / "ADEChallengeData2016").is_dir():
            return root / "ADEChallengeData2016"
        return root

    def problems(self, root: Path) -> list[str]:
        base = self.resolve_root(root)
        if not base.is_dir():
            return [f"the data root {root} does not exist; pass the folder that holds "
                    "ADEChallengeData2016/"]
        found = []
        for split, folder in self.folders.items():
            for kind in ("images", "annotations"):
                if not (base / kind / folder).is_dir():
                    found.append(f"{base}/{kind}/{folder}/ is missing: it comes with the ADE20K "
                                 "SceneParsing archive ADEChallengeData2016.zip "
                                 f"(the {split} split)")
        if found:
            return found
        for split in SPLITS:
            found += _missing_files(self.samples(root, split), split)
        return found

    def samples(self, root: Path, split: str) -> list[Sample]:
        base = self.resolve_root(root)
        folder = self.folders[split]
        image_dir, label_dir = base / "images" / folder, base / "annotations" / folder
        if not image_dir.is_dir():
            raise BenchError(f"{image_dir} is missing; run `bench data check --dataset ade "
                             f"--root {root}` to see how to complete the layout")
        return [
            Sample(image.stem, image, label_dir / f"{image.stem}.png")
            for image in sorted(image_dir.glob("*.jpg"))
        ]


def _missing_files(samples: list[Sample], split: str) -> list[str]:
    found = []
    if not samples:
        found.append(f"the {split} split lists no images")
    for attribute in ("image", "label"):
        missing = [s for s in samples if not getattr(s, attribute).is_file()]
        if missing:
            examples = ", ".join(str(getattr(s, attribute)) for s in missing[:3])
            found.append(f"{len(missing)} of {len(samples)} {split} {attribute} files are "
                         f"missing, e.g. {examples}")
    return found


LAYOUTS = {"voc": VocLayout(), "ade": AdeLayout()}
