"""`bench data import-splits` and the ADE partition protocols: crafted MiB-style `.npy` files give
exactly their image sets, bad files are refused with one line, the embedded data gets MiB's
greedy partition (checked by hand on a small presence matrix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.data.reference_splits import greedy_partition
from bench.data.sources import resolve_source
from bench.errors import BenchError
from protocols import get_protocol
from tests.conftest import label_with

# ADE training images (sorted by name, as MiB indexes them) and their classes
ADE_TRAIN = {1: (0, 1, 5), 2: (0, 120), 3: (0, 7, 101), 4: (0, 150), 5: (0, 33), 6: (0,)}


def write_ade(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        for folder in ("training", "validation"):
            (base / kind / folder).mkdir(parents=True)
    files = {f"ADE_train_{i:08d}": ("training", label_with(*c)) for i, c in ADE_TRAIN.items()}
    files["ADE_val_00000001"] = ("validation", label_with(0, 1, 130))
    for stem, (folder, label) in files.items():
        Image.new("RGB", (8, 8)).save(base / "images" / folder / f"{stem}.jpg")
        Image.fromarray(label, mode="L").save(base / "annotations" / folder / f"{stem}.png")
    return root


def write_npy(folder: Path, *steps: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for step, indices in enumerate(steps):
        np.save(folder / f"train-{step}.npy", np.array(indices, dtype=np.int64))
    return folder


def import_splits(dataset: str, root: Path, source: Path) -> int:
    return main(["data", "import-splits", "--dataset", dataset, "--root", str(root),
                 "--from", str(source)])


def train_names(dataset: str, root: Path, protocol: str, step: int) -> list[str]:
    index = resolve_source(dataset, root).index(log=lambda _: None)
    return [s.name for s in index.select(get_protocol(protocol), step, "train")]


def test_ade_partition_is_imported_exactly(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade")
    # MiB lists a step's images in set order: only the set counts; index i = image i + 1
    release = tmp_path / "release" / "data"
    write_npy(release / "ade" / "100-50", [4, 0, 2], [3, 1])
    assert import_splits("ade", root, release) == 0
    assert train_names("ade", root, "ade-100-50-partition", 0) == [
        "ADE_train_00000001", "ADE_train_00000003", "ADE_train_00000005"]
    assert train_names("ade", root, "ade-100-50-partition", 1) == [
        "ADE_train_00000002", "ADE_train_00000004"]
    # the overlapped protocol keeps its rule-based lists (image 3 holds 7 and 101: both steps)
    assert train_names("ade", root, "ade-100-50", 1) == [
        "ADE_train_00000002", "ADE_train_00000003", "ADE_train_00000004"]


@pytest.mark.parametrize(("steps", "reason"), [
    (([0, 2, 4], [1, 9]), "train-1.npy: index 9 is out of range: the dataset lists 6 training "
                          "images (0..5)"),
    (([0, 2, 4], [1, 3, 2]), "train-1.npy: image 2 is listed in step 0 too; in a partition "
                             "every image is in one step only"),
    (([0, 2, 4, 1], [3]), "train-0.npy: image 1 has none of step 0's classes"),
])
def test_bad_reference_files_are_refused_in_one_line(tmp_path: Path, capsys, steps,
                                                     reason) -> None:
    root = write_ade(tmp_path / "ade")
    write_npy(tmp_path / "from" / "100-50", *steps)
    assert import_splits("ade", root, tmp_path / "from") == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1
    assert not list(root.rglob("imported"))  # nothing written


def test_partition_without_imported_files_names_the_files_and_the_command(tmp_path) -> None:
    root = write_ade(tmp_path / "ade")
    with pytest.raises(BenchError, match=r"ade-100-10-partition trains on MiB's ADE partition, "
                                         r"which is not imported .* `bench data import-splits "
                                         r"--dataset ade --root .* --from PATH` with PATH "
                                         r"holding ade/100-10/train-0.npy .. train-5.npy"):
        train_names("ade", root, "ade-100-10-partition", 0)


def test_voc_reference_sets_are_imported_and_compared(crafted_voc: Path, tmp_path, capsys):
    # crafted_voc: A(1) B(16) C(2, 16) D(16, 18) E(17, 20) F() G(3, 19); 19-1 overlapped
    # regenerates step 0 = A B C D E G, step 1 = E; the reference leaves E out of step 0
    write_npy(tmp_path / "voc" / "19-1-ov", [0, 1, 2, 3, 6], [4])
    assert import_splits("voc", crafted_voc, tmp_path) == 0
    out = capsys.readouterr().out
    assert "voc-19-1: imported 2 steps" in out
    assert ("step 0: reference 5, regenerated 6, only in the reference 0, only regenerated 1"
            in out)
    assert "step 1: reference 1, regenerated 1, only in the reference 0, only regenerated 0" in out
    assert train_names("voc", crafted_voc, "voc-19-1", 0) == ["A", "B", "C", "D", "G"]
    assert train_names("voc", crafted_voc, "voc-19-1-disjoint", 0) == ["A", "B", "C", "D", "G"]


def test_greedy_partition_by_hand() -> None:
    """ade-100-50: class 1 is learned at step 0, class 120 at step 1.

    Images (classes): 0 (1, 120), 1 (1), 2 (120), 3 (1, 120), 4 (); members: 3 each.
    Visit order: smallest class, then index: 0, 1, 3 (class 1), 2 (class 120); 4 has none.
    image 0: scores 120 + 6/3 for both classes: the first (class 1) wins -> step 0, added[1] = 1
    image 1: step 0, added[1] = 2
    image 3: class 1: 120 (1 - 2/3) + 2 = 42; class 4: 120 + 2 = 122 -> step 1, added[120] = 1
    image 2: step 1.
    """
    protocol = get_protocol("ade-100-50-partition")
    presence = np.zeros((5, 152), dtype=bool)
    for image, classes in {0: (1, 120), 1: (1,), 2: (120,), 3: (1, 120), 4: ()}.items():
        presence[image, [0, *classes]] = True
    assert greedy_partition(presence, protocol) == [[0, 1], [2, 3]]


def test_the_embedded_ade_gets_a_partition(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    from bench.data.synth import ensure_synth

    root = ensure_synth("synth-ade", n_train=120, n_val=10)
    from bench.data.sources import DataSource

    index = DataSource("synth-ade", "ade", root, synthetic=True).index(log=lambda _: None)
    protocol = get_protocol("ade-100-50-partition")
    steps = [{s.name for s in index.select(protocol, t, "train")} for t in range(2)]
    assert steps[0] and steps[1] and not steps[0] & steps[1]
    overlapped = [{s.name for s in index.select(get_protocol("ade-100-50"), t, "train")}
                  for t in range(2)]
    assert steps[1] <= overlapped[1] and steps[0] | steps[1] <= overlapped[0] | overlapped[1]
