"""Harness overhead: the engine's training loop against a bare PyTorch loop on the same batches.

Both loops run the same model, optimiser, forward/backward passes and batches (materialised once
from the step's real DataLoader). Target (issue 3): the harness at most 10 % slower. A second
ratio includes the engine's own data pipeline (DataLoader + joint transforms) for context.

    python benchmarks/harness_overhead.py [--iterations 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.commands.common import build_config
from bench.data.transforms import normalize
from bench.runner import Runner
from bench.training import train_step


def bare_loop(model, batches, lr: float) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    model.train()
    started = time.perf_counter()
    for images, labels in batches:
        output = model(normalize(images))
        loss = F.cross_entropy(output.logits, labels, ignore_index=255)
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
        namespace = argparse.Namespace(protocol="voc-15-1", method="ft", seed=0, data_root=None,
                                       dataset=None, runs_root=tmp, quiet=True, overrides=[])
        config, _ = build_config(namespace)
        runner = Runner(config, log=lambda _: None)
        recipe = runner.recipe(0)
        recipe = type(recipe)(**{**recipe.__dict__, "epochs": 1})
        dataset = runner.train_data(0)
        loader = runner.loader(dataset, recipe.batch_size, shuffle=True,
                               generator=torch.Generator().manual_seed(0))
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == args.iterations:
                break
        model, _ = runner.model_for_step(0)
        initial = copy.deepcopy(model.state_dict())
        context = runner.context(0, model, None)
        bare, harness, harness_data = [], [], []
        for repeat in range(args.repeats):
            model.load_state_dict(initial)
            bare.append(bare_loop(model, batches, recipe.lr))
            model.load_state_dict(initial)
            checkpoint = Path(tmp) / f"epoch{repeat}.pt"
            started = time.perf_counter()
            train_step(context, runner.method, recipe, lambda epoch: batches, len(batches), 0,
                       checkpoint, quiet=True, log=lambda _: None)
            harness.append(time.perf_counter() - started)
            model.load_state_dict(initial)

            def real_batches(epoch: int):
                for index, batch in enumerate(loader):
                    if index == len(batches):
                        return
                    yield batch

            started = time.perf_counter()
            train_step(context, runner.method, recipe, real_batches, len(batches), 0,
                       Path(tmp) / f"data{repeat}.pt", quiet=True, log=lambda _: None)
            harness_data.append(time.perf_counter() - started)
        best_bare, best_harness, best_data = min(bare), min(harness), min(harness_data)
        per = 1000 / len(batches)
        print(f"{len(batches)} iterations of batch {recipe.batch_size} x 3 x "
              f"{config['trainer']['crop']}^2, model {config['model']['backbone']} "
              f"(base {config['model']['base_channels']}), {torch.get_num_threads()} threads")
        print(f"bare PyTorch loop:                 {best_bare:.2f} s ({best_bare * per:.0f} ms/it)")
        overhead = 100 * (best_harness / best_bare - 1)
        print(f"harness loop, same batches:        {best_harness:.2f} s "
              f"({best_harness * per:.0f} ms/it), overhead {overhead:+.1f} % (target <= 10 %)")
        print(f"harness loop + its data pipeline:  {best_data:.2f} s "
              f"({best_data * per:.0f} ms/it), {100 * (best_data / best_bare - 1):+.1f} % vs bare")


if __name__ == "__main__":
    main()
