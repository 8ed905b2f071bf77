"""The reference releases' per-step training image lists: imported, validated, and written as
this project's plain split files; and the seeded greedy partition of the embedded ADE data.

The files (MiB, fcdl94/MiB, and SDR, LTTM/SDR, ship the same ones):
- ADE: `data/ade/<task>/train-<step>.npy`, task `100-50`, `100-10`, `50` (= 50-50) and the b
  orders `100-50b`, `100-10b`, `50b` (= 50-50b): a partition
  of the training images, each image in exactly one step. An entry is an index into the training
  images sorted by file name (fcdl94/MiB dataset/ade.py `AdeSegmentation.__init__`:
  `sorted(os.listdir(images/training))`, the order `bench.data.layouts.AdeLayout` lists them);
  each file lists its step's images in no particular order (ADE-Split.ipynb saves
  `np.array(list(a_set))`), so only the set of a step counts.
- VOC: `data/voc/<task>[-ov]/train-<step>.npy` (`-ov` overlapped, else disjoint), tasks `19-1`,
  `15-5`, `15-5s` (= 15-1), `10-10`, `10-10s` (= 10-1): MiB's `filter_images` output, indices
  into the lines of the SBD `train_aug.txt` the release reads (fcdl94/MiB dataset/voc.py
  `VOCSegmentation.__init__`, `splits/train_aug.txt`), which must be the file the layout lists
  (`ImageSets/Segmentation/train_aug.txt`, the same 10,582 lines in the same order).

Imported lists are written to `<cache>/imported/<protocol>/train-step<t>.txt` (one image name a
line after a header naming the source file and the label files' fingerprint) and then used by
that protocol in place of the regenerated lists (the data digest, part of every run's identity,
changes with them). ADE partition protocols have no regenerated list: without imported files a
run stops, naming the files and the command; the embedded `synth-ade` gets `greedy_partition`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as Interface

import numpy as np

from bench.errors import BenchError
from bench.store.atomic import write_text_atomic
from protocols.protocol import Protocol
from protocols.registry import canonical_name, get_protocol
from protocols.rules import train_mask

IMPORT_HEADER = "# css-bench imported split"


class SplitIndexLike(Interface):
    """What the import needs of a `bench.data.split_index.SplitIndex` (which imports this
    module, so it is not imported here)."""

    cache_dir: Path

    def presence(self, split: str) -> tuple[list, np.ndarray, str]: ...
# reference task folder -> (this project's setting, modes it stands for); `-ov` marks overlap
VOC_TASKS: dict[str, str] = {"19-1": "19-1", "15-5": "15-5", "15-5s": "15-1", "10-10": "10-10",
                             "10-10s": "10-1", "offline": "offline"}
ADE_TASKS: dict[str, str] = {"100-50": "100-50", "100-10": "100-10", "50": "50-50",
                             "100-50b": "100-50b", "100-10b": "100-10b", "50b": "50-50b"}


@dataclass(frozen=True)
class ReferenceTask:
    """One reference folder: which protocol(s) it gives lists for, and its step files."""

    folder: Path
    protocols: tuple[str, ...]
    files: tuple[Path, ...]  # train-0.npy, train-1.npy, ... in step order


def imported_path(cache_dir: Path, protocol: str, step: int) -> Path:
    return cache_dir / "imported" / protocol / f"train-step{step}.txt"


def find_tasks(source: Path, dataset: str) -> list[ReferenceTask]:
    """The reference task folders under `source` (a release's root, its `data/`, or
    `data/<dataset>/`), each with its consecutive `train-<step>.npy` files."""
    base = next((candidate for candidate in (source / "data" / dataset, source / dataset, source)
                 if candidate.is_dir() and any(candidate.glob("*/train-0.npy"))), None)
    if base is None:
        raise BenchError(f"no reference split files under {source}: pass the folder holding "
                         f"{dataset}/<task>/train-<step>.npy (the data/ folder of fcdl94/MiB or "
                         "LTTM/SDR)")
    tasks = []
    for folder in sorted(p.parent for p in base.glob("*/train-0.npy")):
        name = folder.name
        if dataset == "ade":
            setting = ADE_TASKS.get(name)
            protocols = () if setting is None else (canonical_name("ade", setting, "partition"),)
        else:
            overlap = name.endswith("-ov")
            setting = VOC_TASKS.get(name.removesuffix("-ov"))
            modes = ("overlap",) if overlap else ("disjoint", "sequential")
            protocols = () if setting is None else tuple(
                canonical_name("voc", setting, mode) for mode in modes)
        files = []
        while (folder / f"train-{len(files)}.npy").is_file():
            files.append(folder / f"train-{len(files)}.npy")
        tasks.append(ReferenceTask(folder, protocols, tuple(files)))
    return tasks


def read_indices(path: Path) -> np.ndarray:
    """The integer indices of one `.npy` file (no pickled objects)."""
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BenchError(f"{path} is not a readable .npy file of image indices ({error}); "
                         "replace it with the release's file") from None
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise BenchError(f"{path} holds {values.dtype} values of shape {values.shape}, not a "
                         "list of integer image indices; replace it with the release's file")
    return values.astype(np.int64)


def validate_task(protocol: Protocol, steps: Sequence[np.ndarray], files: Sequence[Path],
                  presence: np.ndarray) -> None:
    """Refuse, with one line, lists that do not fit the dataset or the protocol: a step count
    other than the protocol's, an index out of range, an image listed twice (in one step, or in
    two steps of a partition), an image without any of its step's classes."""
    if len(steps) != protocol.num_steps:
        raise BenchError(f"{files[0].parent} has {len(steps)} step files but {protocol.name} has "
                         f"{protocol.num_steps} steps; pass the folder of that task")
    count = presence.shape[0]
    owner: dict[int, int] = {}
    for step, (indices, path) in enumerate(zip(steps, files, strict=True)):
        bad = indices[(indices < 0) | (indices >= count)]
        if bad.size:
            raise BenchError(f"{path}: index {int(bad[0])} is out of range: the dataset lists "
                             f"{count} training images (0..{count - 1}); these files belong to "
                             "another copy or version of the dataset")
        unique, counts = np.unique(indices, return_counts=True)
        if (counts > 1).any():
            raise BenchError(f"{path}: image {int(unique[counts > 1][0])} is listed twice in "
                             "this step; replace the file with the release's")
        for index in unique.tolist():
            if protocol.mode == "partition" and index in owner:
                raise BenchError(f"{path}: image {index} is listed in step {owner[index]} too; "
                                 "in a partition every image is in one step only: replace the "
                                 "file with the release's")
            owner.setdefault(index, step)
        new = list(protocol.new_classes(step))
        lacking = indices[~presence[indices][:, new].any(axis=1)] if indices.size else indices
        if lacking.size:
            raise BenchError(f"{path}: image {int(lacking[0])} has none of step {step}'s classes "
                             f"({len(lacking)} such images); these files belong to another task "
                             "or dataset version")


def greedy_partition(presence: np.ndarray, protocol: Protocol) -> list[list[int]]:
    """Each training image in exactly one step, by MiB's greedy score (fcdl94/MiB ADE-Split.ipynb,
    the cell that "actually make[s] the split"), image indices ascending per step.

    members[c] = images containing class c. Images with a class (background aside) are visited
    in the notebook's order: by their smallest class, then by index (its dict `imgs_to_cls` is
    filled class by class). For each class c of the image, score = 120 (1 - added[c] /
    members[c]) + sum of members over the image's classes / members[c]; the first class with the
    highest score takes the image to its step, and added[] grows by one for each of the image's
    classes of that step. Images with background only are in no step (as in the notebook).

    The notebook's only random draw is its class order (`np.random.shuffle`); here the class to
    step map is the protocol's, so the partition is a function of the data: the seed is the
    dataset's (`data.synth.seed` draws the images), and nothing else is random.
    """
    labels = protocol.num_labels
    has = presence[:, 1:labels]  # columns are classes 1..labels-1
    members = has.sum(axis=0).astype(np.float64)
    step_of = np.zeros(labels, dtype=np.int64)
    for step in range(protocol.num_steps):
        step_of[list(protocol.step_classes(step))] = step
    added = np.zeros(labels - 1, dtype=np.float64)
    steps: list[list[int]] = [[] for _ in range(protocol.num_steps)]
    with_class = np.flatnonzero(has.any(axis=1))
    smallest = has[with_class].argmax(axis=1)
    for image in with_class[np.lexsort((with_class, smallest))]:
        classes = np.flatnonzero(has[image])  # 0-based: class = column + 1
        scores = 120.0 * (1.0 - added[classes] / members[classes]) \
            + members[classes].sum() / members[classes]
        chosen = int(step_of[classes[int(np.argmax(scores))] + 1])
        steps[chosen].append(int(image))
        added[classes[step_of[classes + 1] == chosen]] += 1
    return [sorted(s) for s in steps]


def write_lists(cache_dir: Path, protocol: str, lists: Sequence[Sequence[str]],
                source: str, fingerprint: str) -> list[Path]:
    paths = []
    for step, names in enumerate(lists):
        path = imported_path(cache_dir, protocol, step)
        header = f"{IMPORT_HEADER}: {source}; files {fingerprint}"
        write_text_atomic(path, "\n".join([header, *names]) + "\n")
        paths.append(path)
    return paths


def read_imported(cache_dir: Path, protocol: str, step: int,
                  fingerprint: str) -> list[str] | None:
    """The imported list of a protocol's step (None when there is none); a list imported for
    another copy of the label files is refused with the command that re-imports it."""
    path = imported_path(cache_dir, protocol, step)
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith(IMPORT_HEADER):
        raise BenchError(f"{path} is not an imported split file; delete it or re-import with "
                         "`bench data import-splits`")
    if not lines[0].endswith(f"files {fingerprint}"):
        raise BenchError(f"{path} was imported for other label files than the dataset's now; "
                         "re-import with `bench data import-splits`")
    return lines[1:]


def missing_partition(protocol: Protocol, root: Path) -> BenchError:
    task = {v: k for k, v in ADE_TASKS.items()}.get(protocol.setting, protocol.setting)
    return BenchError(
        f"{protocol.name} trains on MiB's ADE partition, which is not imported for {root}: run "
        f"`bench data import-splits --dataset ade --root {root} --from PATH` with PATH holding "
        f"ade/{task}/train-0.npy .. train-{protocol.num_steps - 1}.npy (the data/ folder of "
        "fcdl94/MiB or LTTM/SDR)")


def step_differences(imported: Sequence[Sequence[str]],
                     regenerated: Sequence[Sequence[str]]) -> list[str]:
    """Per step: how many images only the reference lists, only the regenerated list holds."""
    lines = []
    for step, (ours, theirs) in enumerate(zip(regenerated, imported, strict=True)):
        ours_set, theirs_set = set(ours), set(theirs)
        lines.append(f"step {step}: reference {len(theirs_set)}, regenerated {len(ours_set)}, "
                     f"only in the reference {len(theirs_set - ours_set)}, only regenerated "
                     f"{len(ours_set - theirs_set)}")
    return lines


def names_of(indices: Sequence[np.ndarray], names: Sequence[str]) -> list[list[str]]:
    """Image names of each step's indices, in ascending index order (the dataset's order)."""
    return [[names[i] for i in sorted(set(step.tolist()))] for step in indices]



def import_reference(index: SplitIndexLike, source: Path, dataset: str,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Read, validate (all before writing any) and write every reference task under `source`
    for the dataset of `index`; log per protocol and step how the imported lists differ from
    the regenerated ones. Returns the files written."""
    samples, presence, fingerprint = index.presence("train")
    names = [s.name for s in samples]
    ready = []
    for task in find_tasks(source, dataset):
        if not task.protocols:
            log(f"skipped {task.folder}: no protocol of this project uses the task "
                f"{task.folder.name}")
            continue
        steps = [read_indices(path) for path in task.files]
        for name in task.protocols:
            protocol = get_protocol(name)
            validate_task(protocol, steps, task.files, presence)
            ready.append((protocol, task, names_of(steps, names)))
    if not ready:
        raise BenchError(f"no reference task under {source} matches a protocol of this project "
                         f"({dataset} tasks: "
                         + ", ".join(ADE_TASKS if dataset == "ade" else VOC_TASKS) + ")")
    written = []
    for protocol, task, lists in ready:
        written += write_lists(index.cache_dir, protocol.name, lists, str(task.folder),
                               fingerprint)
        log(f"{protocol.name}: imported {len(lists)} steps from {task.folder}")
        if protocol.mode == "partition":
            log("  " + ", ".join(f"step {t}: {len(step)} images" for t, step in
                                 enumerate(lists)))
            continue
        regenerated = [[names[i] for i in np.flatnonzero(train_mask(presence, protocol, t))]
                       for t in range(protocol.num_steps)]
        log("\n".join("  " + line for line in step_differences(lists, regenerated)))
    return written
