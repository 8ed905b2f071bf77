"""The CLI as a user runs it: listing protocols and the errors it prints without a traceback."""

import subprocess
import sys

from bench.cli import main
from protocols import protocol_names


def test_list_protocols_shows_every_name_with_steps(capsys):
    assert main(["list", "protocols"]) == 0
    out = capsys.readouterr().out
    for name in protocol_names():
        assert f"\n{name} " in out
    line = next(x for x in out.splitlines() if x.startswith("voc-15-1-disjoint "))
    assert line.split()[1:] == ["disjoint", "6", "steps", "0-15", "|", "16", "|", "17", "|", "18",
                                "|", "19", "|", "20"]
    line = next(x for x in out.splitlines() if x.startswith("voc-19-1b "))
    assert line.endswith("0-4, 6-20 | 5")


def test_list_with_pattern(capsys):
    assert main(["list", "protocols", "ade-*-sequential"]) == 0
    names = [x.split()[0] for x in capsys.readouterr().out.splitlines() if not x.startswith("#")]
    assert names == ["ade-100-50-sequential", "ade-100-10-sequential", "ade-50-50-sequential",
                     "ade-100-5-sequential", "ade-offline-sequential",
                     # MiB's other ADE class orders (fcdl94/MiB tasks.py tasks_ade)
                     "ade-100-50b-sequential", "ade-100-50c-sequential",
                     "ade-100-10b-sequential", "ade-100-10c-sequential",
                     "ade-50-50b-sequential", "ade-50-50c-sequential"]


def test_data_check_of_a_missing_root_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "data", "check", "--dataset", "voc", "--root",
         str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_data_check_names_a_bad_label_value(crafted_voc, capsys):
    from PIL import Image

    Image.fromarray(__import__("numpy").full((8, 8), 77, "uint8"), mode="L").save(
        crafted_voc / "SegmentationClassAug" / "V2.png")
    assert main(["data", "check", "--dataset", "voc", "--root", str(crafted_voc)]) == 2
    err = capsys.readouterr().err
    assert "V2.png contains the value 77" in err


def test_data_check_passes_on_a_crafted_layout(crafted_voc, capsys):
    assert main(["data", "check", "--dataset", "voc", "--root", str(crafted_voc)]) == 0
    out = capsys.readouterr().out
    assert "train: 7 images" in out and "val: 3 images" in out and "ok:" in out


def test_data_check_passes_on_both_embedded_datasets(tmp_path):
    """The embedded datasets, at their default sizes, pass the same check as real data."""
    import os

    env = {**os.environ, "CSS_BENCH_CACHE": str(tmp_path)}
    for name, train, val in (("synth-voc", 1000, 250), ("synth-ade", 2000, 1000)):
        result = subprocess.run([sys.executable, "-m", "bench.cli", "data", "check", "--dataset",
                                 name], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        assert f"train: {train} images, label files valid" in result.stdout
        assert f"val: {val} images, label files valid" in result.stdout
        assert f"ok: {name} at {tmp_path}" in result.stdout
        assert "classes with no" not in result.stdout
