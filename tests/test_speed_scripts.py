"""The speed scripts run end to end at a tiny size (a smoke test: no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=900, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gpu_step_runs_every_configuration_at_a_tiny_size_on_the_cpu(tmp_path):
    saved = tmp_path / "gpu_step.json"
    out = script("benchmarks/gpu_step.py", "--device", "cpu", "--tiny", "--batches", "2",
                 "--warmup", "0", "--iterations", "1", "--save", str(saved))
    assert "compile backend eager" in out  # the CPU default: graph capture, no C++ build
    rows = [line.split() for line in out.splitlines() if line.startswith(("step 0", "step 1"))]
    assert [(r[0] + r[1], r[2], r[3]) for r in rows] == [
        (step, "2", config) for step in ("step0", "step1")
        for config in ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")]
    assert "GFLOP per image (forward + backward)" in out
    assert "no projection" in out  # the projection needs the paper size
    # the saved figures are what bench reproduce estimates device-hours from
    from bench.reproduce.estimate import load_figures, pick_device

    figures = load_figures(saved)
    assert pick_device(figures, None) == "CPU"
    device = figures["devices"]["CPU"]
    assert device["model"]["backbone"] == "resnet18" and device["model"]["crop"] == 64
    assert {(f["step"], f["batch"], f["config"]) for f in device["figures"]} == {
        (step, 2, config) for step in ("step 0", "step 1")
        for config in ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")}
    assert all(f["ms_per_iteration"] > 0 for f in device["figures"])


def test_loader_speed_measures_the_real_data_path(tmp_path):
    out = script("benchmarks/loader_speed.py", "--workers", "0,1", "--batches", "1",
                 "--images", "24", "--fixture", str(tmp_path / "fixture"))
    assert "torchvision.io.decode_jpeg" in out and "PIL" in out
    table = out.split("vs 1 worker", 1)[1].split()
    assert table[0] == "0" and table[4] == "1"  # a row per worker count
    assert len(list((tmp_path / "fixture" / "JPEGImages").glob("*.jpg"))) == 24
