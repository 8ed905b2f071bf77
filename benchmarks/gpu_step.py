"""The training step of the harness on one device: DeepLab-V3 ResNet-101 at 512 px, MiB's batch
(24) and SDR's (8), step 0 (cross-entropy) and an incremental step (MiB's loss, the old model's
forward under no_grad), for fp32 eager, bf16, bf16 + channels_last and bf16 + channels_last +
torch.compile, in one run.

Each configuration runs the engine's own `StepTrainer.run_iteration` (normalisation, forward
passes, the method's loss, backward, SGD) on random uint8 batches already on the device, so it
times the compute of a step, not the loading (see benchmarks/loader_speed.py). Printed: ms per
iteration (median, and min-max over the timed iterations), images/s, achieved TFLOP/s (FLOPs
of one iteration counted by torch.utils.flop_counter), the fraction of the device's dense bf16
peak (known devices below, or --peak-tflops), the speed-up over fp32 eager, and the projected
time of step 0 and of the whole voc-15-1 run at the MiB recipe (batch 24, 30 epochs a step,
evaluation of every step's test images included).

    python3 benchmarks/gpu_step.py                          # the paper size on the GPU
    python3 benchmarks/gpu_step.py --device cpu --tiny      # a small model on the CPU (smoke)
    python3 benchmarks/gpu_step.py --save results/speed/gpu_step.json   # keep the figures

`--save` merges this device's figures (ms per iteration and evaluation ms per image per step,
batch and configuration, with the model and crop they were measured at) into a JSON file;
`bench reproduce` estimates device-hours from `results/speed/gpu_step.json` when no finished
run of a configuration is there to go by (bench/reproduce/estimate.py).

With --tiny the model is the embedded benchmark's narrow ResNet-18 at 64 px, batches of 4 and
2: a check that every configuration runs, whose figures say nothing about a GPU. On the CPU the
compiled configuration uses torch.compile's `eager` backend by default (graph capture without
code generation: inductor's C++ compilation takes many minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine.compute import ComputeSettings  # noqa: E402
from bench.engine.model import build_model  # noqa: E402
from bench.engine.trainer import StepTrainer, freeze  # noqa: E402
from bench.spec import ModelConfig, StepRecipe  # noqa: E402
from methods import get_method  # noqa: E402
from methods.base import StepContext  # noqa: E402
from methods.step0 import step0_learner  # noqa: E402
from protocols import get_protocol  # noqa: E402

# Dense (no 2:4 sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's datasheets: H100 SXM5
# and H200 SXM 989.4, H100 PCIe 756, A100 312, L40S 362. Matched against the device name.
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0),
                    ("L40S", 362.0))
# voc-15-1 (overlapped) on real Pascal VOC: training images per step and test images seen after
# each step, from the MiB/SDR reference split files (pinned by tests/test_real_voc.py).
VOC_15_1_TRAIN = (9568, 487, 299, 491, 500, 548)
VOC_15_1_TEST = (1240, 1277, 1329, 1353, 1421, 1449)
MIB_EPOCHS, MIB_BATCH = 30, 24
CONFIGS = {
    "fp32": ("fp32", ComputeSettings(cudnn_benchmark=True)),
    "bf16": ("bf16", ComputeSettings(cudnn_benchmark=True)),
    "bf16+cl": ("bf16", ComputeSettings(channels_last=True, cudnn_benchmark=True)),
    "bf16+cl+compile": ("bf16", ComputeSettings(channels_last=True, compile=True,
                                                cudnn_benchmark=True)),
}


@dataclass
class Measured:
    step: str
    batch: int
    config: str
    milliseconds: list[float]
    flops: float
    eval_ms_per_image: float
    peak_memory: int | None

    @property
    def median(self) -> float:
        return statistics.median(self.milliseconds)


def peak_of(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, f"{given:g} TFLOP/s (--peak-tflops)"
    if device.type != "cuda":
        return None, "unknown on the CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"{value:g} TFLOP/s dense bf16 ({name}, NVIDIA datasheet)"
    return None, f"unknown for {name} (give --peak-tflops)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def models(config: ModelConfig, step: str, device: torch.device):
    """(model, old model or None, learner) of step 0 or of voc-15-1's step 1, with MiB."""
    protocol = get_protocol("voc-15-1")
    method = get_method("mib")(protocol)
    torch.manual_seed(0)
    if step == "step 0":
        return build_model(config, [16], log=lambda _: None).to(device), None, \
            step0_learner(method)
    model = build_model(config, [16], log=lambda _: None)
    old = freeze(build_model(config, [16], log=lambda _: None)).to(device)
    old.load_state_dict(model.state_dict())
    model.add_classifier(1)
    model = model.to(device)
    method.on_step_start(StepContext(protocol, 1, model, old, device, lambda: []))
    return model, old, method


def batch_of(size: int, crop: int, step: str, device: torch.device):
    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (size, 3, crop, crop), dtype=torch.uint8, generator=generator)
    classes = 16 if step == "step 0" else 17
    labels = torch.randint(0, classes, (size, crop, crop), generator=generator)
    if step != "step 0":
        labels = torch.where(labels < 16, 0, 16)  # an incremental step labels only its class
    labels[:, :4] = 255
    return images.to(device), labels.to(torch.uint8).to(device)


def measure(config: ModelConfig, step: str, batch: int, name: str, crop: int,
            device: torch.device, warmup: int, iterations: int, backend: str) -> Measured:
    precision, compute = CONFIGS[name]
    compute = ComputeSettings(compute.channels_last, compute.compile,
                              compute.cudnn_benchmark and device.type == "cuda", backend)
    model, old, learner = models(config, step, device)
    recipe = StepRecipe(epochs=1, lr=0.01, batch_size=batch, crop=crop, momentum=0.9,
                        nesterov=True, weight_decay=1e-4, poly_power=0.9, precision=precision)
    trainer = StepTrainer(model, old, learner, recipe, lambda epoch: [], 1, 0 if step ==
                          "step 0" else 1, 0, device, compute=compute)
    images, labels = batch_of(batch, crop, step, device)
    flops = 0.0
    if name == "fp32":
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            trainer.run_iteration(images, labels)
        flops = float(counter.get_total_flops())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    with torch.backends.cudnn.flags(enabled=True, benchmark=compute.cudnn_benchmark):
        for _ in range(warmup):
            trainer.run_iteration(images, labels)
        synchronize(device)
        times = []
        for _ in range(iterations):
            started = time.perf_counter()
            trainer.run_iteration(images, labels)
            synchronize(device)
            times.append(1000 * (time.perf_counter() - started))
        model.eval()
        forward = trainer.forward
        with torch.no_grad(), trainer.autocast:
            from bench.data.transforms import normalize

            for _ in range(max(1, warmup)):
                forward(normalize(images))
            synchronize(device)
            started = time.perf_counter()
            for _ in range(max(1, iterations // 2)):
                forward(normalize(images))
            synchronize(device)
            eval_ms = 1000 * (time.perf_counter() - started) / max(1, iterations // 2) / batch
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Measured(step, batch, name, times, flops, eval_ms, memory)


def projected(results: dict[tuple[str, int, str], Measured], config: str) -> tuple[float, float]:
    """Seconds of step 0 and of the whole voc-15-1 run at the MiB recipe with `config`."""
    step0 = results[("step 0", MIB_BATCH, config)]
    later = results[("step 1", MIB_BATCH, config)]
    seconds = [MIB_EPOCHS * (count // MIB_BATCH) * (step0 if step == 0 else later).median / 1000
               for step, count in enumerate(VOC_15_1_TRAIN)]
    evaluation = [count * (step0 if step == 0 else later).eval_ms_per_image / 1000
                  for step, count in enumerate(VOC_15_1_TEST)]
    return seconds[0] + evaluation[0], sum(seconds) + sum(evaluation)


def clock(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="the embedded benchmark's small model at 64 px (a smoke test)")
    parser.add_argument("--batches", default=None, help="batch sizes (default 24,8; tiny 4,2)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="subset of " +
                        ", ".join(CONFIGS))
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations (default 5, tiny 1; compilation happens here)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations (default 20; tiny 2)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak, when it is not in the known table")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor on a GPU, eager on the "
                             "CPU, where inductor compiles C++ kernels for minutes)")
    parser.add_argument("--save", default=None,
                        help="merge this device's figures into a JSON file (bench reproduce "
                             "reads results/speed/gpu_step.json)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if args.tiny:
        config = ModelConfig(backbone="resnet18", output_stride=8, aspp_channels=16,
                             base_channels=8, pretrained=None)
        crop, batches = 64, [4, 2]
        warmup, iterations = 1, 2
    else:
        config = ModelConfig(backbone="resnet101", output_stride=16, aspp_channels=256,
                             pretrained=None)
        crop, batches = 512, [MIB_BATCH, 8]
        warmup, iterations = 5, 20
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    warmup = args.warmup if args.warmup is not None else warmup
    iterations = args.iterations if args.iterations is not None else iterations
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    if "fp32" not in names:
        names.insert(0, "fp32")  # the FLOP count and the reference of the speed-ups
    backend = args.compile_backend or ("inductor" if device.type == "cuda" else "eager")
    peak, peak_text = peak_of(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; model {config.backbone} "
          f"(base {config.base_channels}, OS {config.output_stride}, ASPP "
          f"{config.aspp_channels}) at {crop} px; {warmup} warm-up + {iterations} timed "
          f"iterations; compile backend {backend}; peak {peak_text}")
    results: dict[tuple[str, int, str], Measured] = {}
    header = (f"{'step':<7}{'batch':>6}  {'config':<16}{'ms/iter':>9} {'(min-max)':>15}"
              f"{'img/s':>8}{'TFLOP/s':>9}{'of peak':>8}{'vs fp32':>8}{'GiB':>6}")
    print(header)
    for step in ("step 0", "step 1"):
        for batch in batches:
            for config_name in names:
                result = measure(config, step, batch, config_name, crop, device, warmup,
                                 iterations, backend)
                reference = results.get((step, batch, "fp32"), result)
                result.flops = reference.flops or result.flops
                results[(step, batch, config_name)] = result
                seconds = result.median / 1000
                tflops = result.flops / seconds / 1e12
                share = f"{100 * tflops / peak:.0f} %" if peak else "-"
                memory = (f"{result.peak_memory / 2**30:.1f}" if result.peak_memory is not None
                          else "-")
                print(f"{step:<7}{batch:>6}  {config_name:<16}{result.median:>9.1f} "
                      f"{f'({min(result.milliseconds):.1f}-{max(result.milliseconds):.1f})':>15}"
                      f"{batch / seconds:>8.1f}{tflops:>9.3g}{share:>8}"
                      f"{reference.median / result.median:>7.2f}x{memory:>6}", flush=True)
    flops = results[("step 0", batches[0], "fp32")].flops
    print(f"FLOPs of one training iteration (step 0, batch {batches[0]}): {flops / 1e9:.4g} "
          f"GFLOP, {flops / batches[0] / 1e9:.4g} GFLOP per image (forward + backward)")
    if MIB_BATCH in batches and not args.tiny:
        print(f"projected at the MiB recipe (batch {MIB_BATCH}, {MIB_EPOCHS} epochs a step, "
              f"voc-15-1 on real VOC: {VOC_15_1_TRAIN[0]} step-0 images, evaluation included):")
        for config_name in names:
            step0, whole = projected(results, config_name)
            print(f"  {config_name:<16} step 0 {clock(step0):>9}   whole voc-15-1 run "
                  f"{clock(whole):>9}")
    else:
        print("no projection: it needs the paper size at batch 24 (run without --tiny)")
    if args.save:
        save(Path(args.save), name, config, crop, results)


def save(path: Path, device_name: str, config: ModelConfig, crop: int,
         results: dict[tuple[str, int, str], Measured]) -> None:
    """Merge this device's figures into `path` (other devices' figures are kept)."""
    import json

    figures = json.loads(path.read_text()) if path.is_file() else {"format": 1, "devices": {}}
    figures.setdefault("devices", {})[device_name] = {
        "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d"),
        "model": {"backbone": config.backbone, "base_channels": config.base_channels,
                  "output_stride": config.output_stride, "aspp_channels": config.aspp_channels,
                  "crop": crop},
        "figures": [{"step": step, "batch": batch, "config": name,
                     "ms_per_iteration": round(result.median, 3),
                     "eval_ms_per_image": round(result.eval_ms_per_image, 3)}
                    for (step, batch, name), result in sorted(results.items())],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"figures saved in {path} (device {device_name})")


if __name__ == "__main__":
    main()
