"""`model.pretrained=synth`: the embedded benchmark's stand-in for ImageNet weights.

Every published number starts from an ImageNet-pretrained backbone: features that already tell
apart the classes a later step adds (ImageNet holds potted plants, sheep, sofas, trains and
monitors), which is what lets a method that distils features or freezes the backbone (PLOP,
DKD) learn a new class. A backbone trained from random initialisation on step 0 alone has
learned to map the future classes to background (overlap mode labels them so), and on the
embedded data PLOP and DKD then learned no new class at all (new-class mIoU 0.0 after every
step of voc-15-1, whatever the number of epochs).

The stand-in: joint training on every class of the same synthetic dataset drawn with another
seed (`data.synth.seed` + SEED_OFFSET: other images, never the benchmark's), from random
initialisation, at the recipe below; the backbone of that model is loaded like ImageNet
weights (ASPP, head and classifier start from random initialisation). The pretraining is an
ordinary run (recorded, resumable, under its run lock: concurrent runs wait for one
pretraining) in its own runs root, `$CSS_BENCH_CACHE/pretraining` (default
`~/.cache/css-bench/pretraining`), shared by every runs root like torchvision's cache; its run
hash covers everything it depends on (the dataset's sizes and seed, the model, the recipe).
Seed 0 always: like ImageNet weights, one pretrained backbone serves every seed of a benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from bench.data.synth import default_cache_dir
from bench.errors import BenchError
from bench.spec import RunSpec

SYNTH = "synth"
SEED_OFFSET = 1000
# The recipe that trains this model to convergence on the embedded data from random
# initialisation: the synth recipe's former step 0 (batch 8 x 20 epochs at lr 0.1 on the 15
# classes of voc-15-1 gave mIoU 85.8, 85.4, 85.9, 85.8, 84.9 for seeds 0-4). Batch and crop are
# the run's step 0's.
EPOCHS = 20
LR = 0.1
# the protocol whose joint training covers every class of the dataset in one step
JOINT_PROTOCOL = {"voc": "voc-15-1", "ade": "ade-100-50"}


def pretraining_root() -> Path:
    return default_cache_dir().parent / "pretraining"


def pretraining_spec(spec: RunSpec) -> RunSpec:
    """The joint run whose backbone `spec` starts from."""
    if not spec.data.synthetic:
        raise BenchError(f"model.pretrained={SYNTH} is the embedded data's pretraining; on "
                         f"{spec.data.dataset} use model.pretrained=auto (ImageNet weights) "
                         "or a PATH")
    model, recipe, synth = spec.model, spec.recipes[0], dict(spec.data.synth)
    overrides = [
        "trainer=synth", f"trainer.epochs={EPOCHS}", f"trainer.lr={LR}",
        f"trainer.batch_size={recipe.batch_size}", f"trainer.crop={recipe.crop}",
        "trainer.precision=fp32", f"data.dataset={spec.data.dataset}",
        *(f"data.synth.{key}={value}" for key, value in synth.items() if key != "seed"),
        f"data.synth.seed={synth.get('seed', 0) + SEED_OFFSET}",
        f"model.backbone={model.backbone}", f"model.base_channels={model.base_channels}",
        f"model.output_stride={model.output_stride}",
        f"model.aspp_channels={model.aspp_channels}", "model.pretrained=none",
        f"runs_root={pretraining_root()}", f"quiet={str(spec.execution.quiet).lower()}",
        f"device={spec.execution.device}", f"data.num_workers={spec.execution.num_workers}",
        f"trainer.eval_batch_size={spec.execution.eval_batch_size}",
    ]
    return RunSpec.from_names(JOINT_PROTOCOL[spec.data.kind], "joint", 0, overrides)


def backbone_of(state: dict[str, Any]) -> dict[str, Tensor]:
    return {key.removeprefix("backbone."): value for key, value in state.items()
            if key.startswith("backbone.")}
