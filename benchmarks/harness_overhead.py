"""Harness overhead: the engine's training loop against a bare PyTorch loop on the same batches.

Both loops run the same model, optimiser, forward/backward passes and batches (materialised once
from the step's real DataLoader). Target (issue 3): the harness at most 10 % slower. A second
ratio includes the engine's own data pipeline (DataLoader + joint transforms) for context.

    python benchmarks/harness_overhead.py [--iterations 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time

import torch
import torch.nn.functional as F

from bench.data.transforms import normalize
from bench.engine.hooks import PolyLR
from bench.engine.runner import Runner
from bench.engine.trainer import StepTrainer
from bench.spec import RunSpec
from methods.step0 import step0_learner


def bare_loop(model, batches, lr: float) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    model.train()
    started = time.perf_counter()
    for images, labels in batches:
        output = model(normalize(images))
        loss = F.cross_entropy(output.logits, labels.long(), ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec.from_names("voc-15-1", "ft", overrides=[f"runs_root={tmp}", "quiet=true"])
        runner = Runner(spec, log=lambda _: None)
        recipe = dataclasses.replace(spec.recipes[0], epochs=1)
        def loader():  # a fresh pass over epoch 0's batches (the step's persistent loader)
            return runner.scenario.train_batches(0, 0, recipe.batch_size)

        batches = []
        for batch in loader():
            batches.append(batch)
            if len(batches) == args.iterations:
                break
        model, _ = runner.models_for(0)
        initial = copy.deepcopy(model.state_dict())
        learner = step0_learner(runner.method)

        def harness_loop(source) -> float:
            model.load_state_dict(initial)
            trainer = StepTrainer(model, None, learner, recipe, source, len(batches), 0,
                                  spec.seed, runner.device, [PolyLR()])
            started = time.perf_counter()
            trainer.train()
            return time.perf_counter() - started

        def real_batches(epoch: int):
            for index, batch in enumerate(loader()):
                if index == len(batches):
                    return
                yield batch

        bare, harness, harness_data = [], [], []
        for _repeat in range(args.repeats):
            model.load_state_dict(initial)
            bare.append(bare_loop(model, batches, recipe.lr))
            harness.append(harness_loop(lambda epoch: batches))
            harness_data.append(harness_loop(real_batches))
        best_bare, best_harness, best_data = min(bare), min(harness), min(harness_data)
        per = 1000 / len(batches)
        print(f"{len(batches)} iterations of batch {recipe.batch_size} x 3 x "
              f"{recipe.crop}^2, model {spec.model.backbone} (base "
              f"{spec.model.base_channels}), {torch.get_num_threads()} threads, torch "
              f"{torch.__version__}")
        print(f"bare PyTorch loop:                 {best_bare:.2f} s ({best_bare * per:.0f} ms/it)")
        overhead = 100 * (best_harness / best_bare - 1)
        print(f"harness loop, same batches:        {best_harness:.2f} s "
              f"({best_harness * per:.0f} ms/it), overhead {overhead:+.1f} % (target <= 10 %)")
        print(f"harness loop + its data pipeline:  {best_data:.2f} s "
              f"({best_data * per:.0f} ms/it), {100 * (best_data / best_bare - 1):+.1f} % vs bare")


if __name__ == "__main__":
    main()
