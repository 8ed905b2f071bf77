"""Split indexing from label files: selections, the on-disk cache and its invalidation."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.sources import resolve_source
from bench.errors import BenchError
from protocols import get_protocol, rules
from tests.conftest import label_with


def names(samples):
    return "".join(s.name for s in samples)


def test_selections_on_crafted_files(crafted_voc):
    index = resolve_source("voc", crafted_voc).index(log=lambda _: None, )
    overlap, disjoint = get_protocol("voc-15-1"), get_protocol("voc-15-1-disjoint")
    assert names(index.select(overlap, 0, "train")) == "ACG"
    assert names(index.select(disjoint, 0, "train")) == "A"
    assert names(index.select(overlap, 1, "train")) == "BCD"
    assert names(index.select(disjoint, 1, "train")) == "BC"
    assert names(index.select(overlap, 5, "train")) == "E"
    assert names(index.select(overlap, 0, "val")) == "V1"
    assert names(index.select(overlap, 2, "val")) == "V1V2"


def test_split_files_are_written_and_reused(crafted_voc):
    messages = []
    index = resolve_source("voc", crafted_voc).index(log=messages.append)
    protocol = get_protocol("voc-15-1")
    index.select(protocol, 1, "train")
    split_file = crafted_voc / ".css-bench" / "splits" / "voc-15-1" / "train-step1.txt"
    lines = split_file.read_text().splitlines()
    assert lines[0].startswith(f"# css-bench split: rules v{rules.RULES_VERSION}, files ")
    assert lines[1:] == ["B", "C", "D"]
    assert len(messages) == 1 and "indexing 7 label files" in messages[0]

    # a second index reads the cache: no scan, no message, same answer
    again = resolve_source("voc", crafted_voc).index(log=messages.append)
    assert names(again.select(protocol, 1, "train")) == "BCD"
    assert len(messages) == 1


def test_changed_file_list_invalidates_the_cache(crafted_voc):
    messages = []
    resolve_source("voc", crafted_voc).index(log=messages.append).select(
        get_protocol("voc-15-1"), 1, "train")
    lists = crafted_voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    lists.write_text(lists.read_text().replace("B\n", ""))
    index = resolve_source("voc", crafted_voc).index(log=messages.append)
    assert names(index.select(get_protocol("voc-15-1"), 1, "train")) == "CD"
    assert any("re-indexing" in m for m in messages)


def test_changed_rules_version_rebuilds_and_says_so(crafted_voc, monkeypatch):
    protocol = get_protocol("voc-15-1")
    resolve_source("voc", crafted_voc).index(log=lambda _: None).select(protocol, 1, "train")
    monkeypatch.setattr("bench.data.split_index.RULES_VERSION", rules.RULES_VERSION + 1)
    messages = []
    index = resolve_source("voc", crafted_voc).index(log=messages.append)
    assert names(index.select(protocol, 1, "train")) == "BCD"
    assert any("other rules" in m and "rebuilding" in m for m in messages)


def test_label_value_outside_the_dataset_names_file_and_value(crafted_voc):
    bad = crafted_voc / "SegmentationClassAug" / "C.png"
    png = Image.fromarray(label_with(0, 2, 42), mode="P")
    png.putpalette([v for i in range(256) for v in (i, i, i)])
    png.save(bad)
    index = resolve_source("voc", crafted_voc).index(log=lambda _: None)
    with pytest.raises(BenchError, match=r"C\.png contains the value 42"):
        index.presence("train")


def test_corrupt_label_file_is_named(crafted_voc):
    bad = crafted_voc / "SegmentationClassAug" / "D.png"
    bad.write_bytes(bad.read_bytes()[:40])
    index = resolve_source("voc", crafted_voc).index(log=lambda _: None)
    with pytest.raises(BenchError, match=r"D\.png is corrupt or truncated"):
        index.presence("train")


def test_parallel_scan_equals_serial(tmp_path):
    from bench.data.layouts import Sample
    from bench.data.split_index import scan_presence

    rng = np.random.default_rng(0)
    samples = []
    for i in range(150):
        path = Path(tmp_path / f"{i}.png")
        values = rng.choice([0, 1, 5, 20, 255], size=rng.integers(1, 4))
        Image.fromarray(label_with(*values), mode="L").save(path)
        samples.append(Sample(str(i), path, path))
    serial, serial_hashes = scan_presence(samples, 21, workers=1)
    parallel, parallel_hashes = scan_presence(samples, 21, workers=2)
    assert serial.shape == (150, 22) and serial_hashes.shape == (150,)
    assert np.array_equal(serial, parallel)
    assert np.array_equal(serial_hashes, parallel_hashes)


def test_the_digest_follows_label_content_not_where_the_files_are(crafted_voc, tmp_path):
    """Another copy of the same data gives the same digest; an edited label map a new one."""
    import shutil

    protocol = get_protocol("voc-15-1")
    first = resolve_source("voc", crafted_voc).index(log=lambda _: None).digest(protocol)
    copy = tmp_path / "copy"
    shutil.copytree(crafted_voc, copy, ignore=shutil.ignore_patterns(".css-bench"))
    assert resolve_source("voc", copy).index(log=lambda _: None).digest(protocol) == first
    label = copy / "SegmentationClassAug" / "B.png"
    edited = np.array(Image.open(label))
    edited[0, 0] = 1 if edited[0, 0] != 1 else 0
    Image.fromarray(edited, mode="L").save(label)
    changed = resolve_source("voc", copy).index(log=lambda _: None).digest(protocol)
    assert changed != first
    # a step's own digest changes only with the lists that step uses
    step0 = resolve_source("voc", crafted_voc).index(log=lambda _: None).digest(protocol, [0])
    assert step0 != first
