"""The synthetic datasets: determinism, real layouts, label values, content statistics, cache."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.layouts import LAYOUTS
from bench.data.synth import (
    SYNTH_DATASETS,
    SynthSpec,
    class_styles,
    ensure_synth,
    generate,
    render_sample,
    spec_hash,
    synth_spec,
    voc_palette,
)
from bench.errors import BenchError

SMALL = {"n_train": 40, "n_val": 10}


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, tuple[SynthSpec, Path]]:
    """Both datasets at 40 train / 10 val images."""
    out = {}
    for name in SYNTH_DATASETS:
        spec = synth_spec(name, **SMALL)
        out[name] = spec, generate(spec, tmp_path_factory.mktemp(name))
    return out


def read_pairs(spec: SynthSpec, root: Path) -> list[tuple[np.ndarray, Image.Image]]:
    """(image pixels, label image) of every sample, through the real layout readers."""
    layout = LAYOUTS[spec.kind]
    pairs = []
    for split in ("train", "val"):
        for sample in layout.samples(root, split):
            pairs.append((np.array(Image.open(sample.image)), Image.open(sample.label)))
    return pairs


def presence_and_means(spec: SynthSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images x labels presence matrix and per-class mean RGB (void excluded) over n images."""
    k = spec.num_classes
    presence = np.zeros((n, k), bool)
    sums, counts = np.zeros((k, 3)), np.zeros(k)
    for i in range(n):
        image, label = render_sample(spec, "train", i)
        flat, pixels = label.ravel(), image.reshape(-1, 3).astype(float)
        keep = flat < k
        presence[i, np.unique(flat[keep])] = True
        np.add.at(sums, flat[keep], pixels[keep])
        counts += np.bincount(flat[keep], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return presence, sums / counts[:, None]


@pytest.fixture(scope="module")
def voc_stats() -> tuple[np.ndarray, np.ndarray]:
    return presence_and_means(synth_spec("synth-voc"), 400)


def test_spec_defaults_and_errors():
    voc, ade = synth_spec("synth-voc"), synth_spec("synth-ade")
    assert (voc.kind, voc.num_classes, voc.n_train, voc.n_val) == ("voc", 21, 1000, 250)
    assert (ade.kind, ade.num_classes, ade.n_train, ade.n_val) == ("ade", 151, 2000, 1000)
    assert (voc.width, voc.height, voc.void_width, ade.void_width) == (96, 72, 1, 0)
    assert synth_spec("synth-voc", seed=3, width=64).seed == 3
    with pytest.raises(BenchError, match="synth-voc.*synth-ade"):
        synth_spec("synth-coco")
    with pytest.raises(BenchError, match="colour"):
        synth_spec("synth-voc", colour=2)
    with pytest.raises(BenchError, match="num_classes"):
        synth_spec("synth-voc", num_classes=5)
    with pytest.raises(BenchError, match="n_train"):
        synth_spec("synth-voc", n_train=0)
    with pytest.raises(BenchError, match="void"):
        synth_spec("synth-ade", void_width=1)
    with pytest.raises(BenchError, match="integer"):
        synth_spec("synth-voc", width="96")


def test_same_spec_gives_identical_bytes(small, tmp_path):
    for spec, root in small.values():
        again = generate(spec, tmp_path / spec.name)
        assert digests(again) == digests(root)


def test_other_seed_gives_other_files(small, tmp_path):
    spec, root = small["synth-voc"]
    other = generate(synth_spec("synth-voc", seed=1, **SMALL), tmp_path / "seed1")
    first, second = digests(root), digests(other)
    assert first.keys() == second.keys()
    changed = [path for path in first if first[path] != second[path]]
    assert len(changed) >= 0.9 * (len(first) - 2)  # all images; the two id lists are equal


def test_voc_layout_and_labels(small):
    spec, root = small["synth-voc"]
    assert LAYOUTS["voc"].problems(root) == []
    lists = root / "ImageSets" / "Segmentation"
    train = (lists / "train_aug.txt").read_text().split()
    val = (lists / "val.txt").read_text().split()
    assert (len(train), len(val)) == (40, 10) and train[0] == "synth_000000"
    assert not set(train) & set(val)
    palette = voc_palette()
    assert palette[3:6] == [128, 0, 0] and palette[255 * 3:] == [224, 224, 192]
    pairs = read_pairs(spec, root)
    assert len(pairs) == 50
    for pixels, label_image in pairs:
        assert label_image.mode == "P" and label_image.getpalette()[:63] == palette[:63]
        label = np.array(label_image)
        assert pixels.shape == (72, 96, 3) and label.shape == (72, 96)
        values = set(np.unique(label).tolist())
        assert values <= set(range(21)) | {255}
        assert 1 <= len(values - {0, 255}) <= 3
        assert 255 in values
        assert (label == 255).sum() < 0.5 * (label != 0).sum()  # a band, not whole objects


def test_voc_void_band_follows_object_outlines():
    """Void = the object pixels within void_width px of another label; the rest is unchanged."""
    for index in range(10):
        none = render_sample(synth_spec("synth-voc", void_width=0), "train", index)[1]
        for width in (1, 2):
            label = render_sample(synth_spec("synth-voc", void_width=width), "train", index)[1]
            padded = np.pad(none, width, mode="edge")
            border = np.zeros(none.shape, bool)
            for dy, dx in itertools.product(range(2 * width + 1), repeat=2):
                border |= padded[dy:dy + 72, dx:dx + 96] != none
            expected = np.where(border & (none != 0), 255, none)
            assert (label == expected).all()
            assert (label == 255).any()


def test_ade_layout_and_labels(small):
    spec, root = small["synth-ade"]
    assert LAYOUTS["ade"].problems(root) == []
    base = root / "ADEChallengeData2016"
    assert (base / "images" / "training" / "ADE_train_00000001.jpg").is_file()
    assert (base / "annotations" / "validation" / "ADE_val_00000010.png").is_file()
    pairs = read_pairs(spec, root)
    assert len(pairs) == 50
    for pixels, label_image in pairs:
        assert label_image.mode == "L"
        label = np.array(label_image)
        assert pixels.shape == (72, 96, 3) and label.shape == (72, 96)
        values = set(np.unique(label).tolist())
        assert values <= set(range(151))
        assert 1 <= len(values - {0}) <= 3


def test_files_match_render_sample(small):
    """The in-memory renderer the statistics tests use is what generate writes."""
    spec, root = small["synth-voc"]
    sample = LAYOUTS["voc"].samples(root, "val")[3]
    pixels, label = render_sample(spec, "val", 3)
    assert (np.array(Image.open(sample.label)) == label).all()
    jpeg = np.array(Image.open(sample.image)).astype(int)
    assert np.abs(jpeg - pixels).mean() < 4  # JPEG quality 95


def test_class_frequencies_are_uneven_and_complete(voc_stats):
    presence, _ = voc_stats
    per_class = presence[:, 1:].sum(axis=0)
    assert per_class.min() >= 0.03 * len(presence)  # the rarest class is still learnable
    assert per_class.max() >= 2.5 * per_class.min()
    assert presence[:, 1:].sum(axis=1).min() >= 1


def test_scenes_make_disjoint_keep_fewer_than_overlap(voc_stats):
    presence, _ = voc_stats
    base, new = presence[:, 1:16].any(axis=1), presence[:, 16:21].any(axis=1)
    assert new.sum() > 0.1 * len(presence)
    assert (new & base).sum() > 0.3 * new.sum()  # new classes appear next to old ones
    overlap, disjoint = base.sum(), (base & ~new).sum()  # the 15-1 step 0 filters
    assert disjoint < 0.85 * overlap
    # but objects of one image mostly share a scene: co-occurrence is far from independent
    groups = (np.arange(20) % 4)
    same = cross = 0
    for row in presence[:, 1:]:
        classes = np.flatnonzero(row)
        for a, b in itertools.combinations(classes, 2):
            same += groups[a] == groups[b]
            cross += groups[a] != groups[b]
    assert same > 2 * cross


def test_voc_classes_have_distinct_mean_colours(voc_stats):
    _, means = voc_stats
    classes = means[1:]
    distance = np.linalg.norm(classes[:, None] - classes[None], axis=-1)
    assert distance[np.triu_indices(20, 1)].min() > 20
    background = means[0]
    assert np.linalg.norm(classes - background, axis=-1).min() > 20


def test_ade_signatures_are_distinct():
    styles = class_styles(151)[1:]
    signatures = {(s.hsv, s.texture) for s in styles}
    assert len(signatures) == 150  # colour x texture is unique per class
    presence, means = presence_and_means(synth_spec("synth-ade"), 250)
    seen = np.flatnonzero(presence[:, 1:].any(axis=0)) + 1
    assert len(seen) >= 130
    distance = np.linalg.norm(means[seen][:, None] - means[seen][None], axis=-1)
    assert (distance[np.triu_indices(len(seen), 1)] > 10).mean() > 0.98


def test_ensure_synth_is_idempotent(tmp_path):
    root = ensure_synth("synth-voc", cache_dir=tmp_path, **SMALL)
    spec = synth_spec("synth-voc", **SMALL)
    assert root == tmp_path / f"synth-voc-{spec_hash(spec)}"
    marker = json.loads((root / ".complete").read_text())
    assert marker["n_train"] == 40 and marker["name"] == "synth-voc"
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert ensure_synth("synth-voc", cache_dir=tmp_path, **SMALL) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no scratch folder left
    assert ensure_synth("synth-voc", cache_dir=tmp_path, seed=1, **SMALL) != root


def test_ensure_synth_uses_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path))
    root = ensure_synth("synth-ade", n_train=3, n_val=2)
    assert root.parent == tmp_path / "synth"
    assert LAYOUTS["ade"].problems(root) == []


def test_interrupted_generation_is_ignored(tmp_path):
    spec = synth_spec("synth-voc", **SMALL)
    final = tmp_path / f"synth-voc-{spec_hash(spec)}"
    leftover = tmp_path / f".{final.name}.tmp-dead"  # a killed run's scratch folder
    (leftover / "JPEGImages").mkdir(parents=True)
    (leftover / "JPEGImages" / "synth_000000.jpg").write_bytes(b"truncated")
    final.mkdir()  # a stray, unmarked folder where the dataset goes
    (final / "junk").write_text("not a dataset")
    root = ensure_synth("synth-voc", cache_dir=tmp_path, **SMALL)
    assert root == final and (root / ".complete").is_file() and not (root / "junk").exists()
    assert LAYOUTS["voc"].problems(root) == []
    fresh = digests(generate(spec, tmp_path / "fresh"))
    assert {k: v for k, v in digests(root).items() if k != ".complete"} == fresh


def test_concurrent_callers_share_one_folder(tmp_path):
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_synth("synth-voc", cache_dir=tmp_path, **SMALL))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]
    assert LAYOUTS["voc"].problems(results[0]) == []
