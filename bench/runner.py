"""Running every step of a protocol with a method: data, model, loop, evaluation, store.

The runner is method-agnostic: it asks the method for its hooks, its loss and its step-0 recipe,
and never branches on the method's name.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from bench import distributed
from bench.config import config_hash, identity
from bench.data.dataset import StepDataset
from bench.data.sources import resolve_source
from bench.data.transforms import eval_transform, normalize, train_transform
from bench.errors import BenchError
from bench.evaluation import evaluate
from bench.model import ModelConfig, build_model
from bench.records import step_record
from bench.step0_cache import Step0Cache, step0_key
from bench.store import RunStore, load_torch
from bench.training import StepRecipe, derived_seed, freeze, train_step
from methods import StepContext, get_method
from protocols import get_protocol
from protocols.rules import test_lut, train_lut

STEP0_FORMAT = 1


@dataclass
class StepResult:
    step: int
    record: dict[str, Any]
    trained: bool
    reused_step0: bool


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return torch.device(name)


def _digest(values: Iterable[Any]) -> str:
    return hashlib.sha256("\n".join(str(v) for v in values).encode()).hexdigest()[:16]


class Runner:
    def __init__(self, config: dict[str, Any], log: Callable[[str], None] = print) -> None:
        self.config = config
        self.log = log
        knobs = {key: value for key, value in (
            ("background_in_old_all", config["eval"]["background_in_old_all"]),
            ("eval_crop", config["eval"]["crop"]),
            ("void_as_background", config["eval"]["void_as_background"]),
        ) if value is not None}
        requested = get_protocol(config["protocol"]).with_knobs(**knobs)
        method_class = get_method(config["method"])
        self.method = method_class(requested, config["method_params"])
        self.requested = requested
        self.protocol = self.method.plan_protocol(requested)
        self.seed = int(config["seed"])
        data = config["data"]
        synth = {k: v for k, v in data["synth"].items() if v is not None}
        self.source = resolve_source(data["dataset"], data["root"], self.protocol.dataset,
                                     synth_options=synth)
        self.index = self.source.index(log=log)
        self.hash = config_hash(config)
        self.store = RunStore(config["runs_root"], requested.name, self.method.name,
                              self.seed, self.hash)
        self.step0_cache = Step0Cache(config["runs_root"])
        self.device = pick_device(config["device"])
        self._train_data: dict[int, StepDataset] = {}
        self.trainer = config["trainer"]
        self.model_config = ModelConfig(
            backbone=config["model"]["backbone"],
            output_stride=int(config["model"]["output_stride"]),
            aspp_channels=int(config["model"]["aspp_channels"]),
            base_channels=int(config["model"].get("base_channels", 64)),
            pretrained=config["model"]["pretrained"],
        )

    # ----- data -----------------------------------------------------------------------------
    def recipe(self, step: int) -> StepRecipe:
        trainer = self.trainer
        ranks = distributed.world_size()
        if int(trainer["batch_size"]) < ranks:
            raise BenchError(f"trainer.batch_size={trainer['batch_size']} is the global batch and "
                             f"must give every one of the {ranks} ranks at least one image: "
                             f"set trainer.batch_size >= {ranks} or use fewer tasks")
        return StepRecipe(
            epochs=int(trainer["epochs"] if step == 0 else trainer.get("epochs_incremental")
                       or trainer["epochs"]),
            lr=float(trainer["lr"] if step == 0 else trainer["lr_incremental"]),
            batch_size=int(trainer["batch_size"]),
            momentum=float(trainer["momentum"]),
            nesterov=bool(trainer["nesterov"]),
            weight_decay=float(trainer["weight_decay"]),
            poly_power=float(trainer["poly_power"]),
            bf16=bool(trainer["bf16"]),
        )

    def cache_bytes(self) -> int:
        """Decoded-file cache per dataset: only when loading in-process (workers would each
        hold a copy that dies with them every epoch)."""
        if int(self.config["data"]["num_workers"]) > 0:
            return 0
        return int(self.config["data"].get("cache_mb", 0)) << 20

    def train_data(self, step: int) -> StepDataset:
        if step not in self._train_data:
            self._train_data[step] = self._make_train_data(step)
        return self._train_data[step]

    def _make_train_data(self, step: int) -> StepDataset:
        samples = self.index.select(self.protocol, step, "train")
        if not samples:
            raise BenchError(f"step {step} of {self.protocol.name} has no training image on "
                             f"{self.source.describe()}: no image contains its classes "
                             f"{self.protocol.new_classes(step)} under the {self.protocol.mode} "
                             "rules; use a larger dataset or another protocol")
        return StepDataset(samples, train_lut(self.protocol, step),
                           train_transform(int(self.trainer["crop"])), self.cache_bytes())

    def test_data(self, step: int) -> StepDataset:
        samples = self.index.select(self.protocol, step, "val")
        return StepDataset(samples, test_lut(self.protocol, step),
                           eval_transform(int(self.trainer["crop"]), self.protocol.eval_crop),
                           self.cache_bytes())

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool,
               generator: torch.Generator | None = None) -> DataLoader:
        """Training loaders drop the last partial batch (as MiB). A step with fewer images than
        a batch draws one full batch with replacement per epoch instead: a batch of one image
        cannot pass BatchNorm in training (the ASPP pooling branch is 1x1)."""
        workers = int(self.config["data"]["num_workers"])
        sampler = None
        if shuffle and len(dataset) < batch_size:
            sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size,
                                    generator=generator)
            shuffle, generator = False, None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          sampler=sampler, drop_last=shuffle, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def test_loader(self, step: int) -> DataLoader:
        size = 1 if self.protocol.eval_crop == "full" else int(self.trainer["eval_batch_size"])
        return self.loader(self.rank_shard(self.test_data(step)), size, shuffle=False)

    @staticmethod
    def rank_shard(dataset: StepDataset) -> Dataset:
        """The test items this rank evaluates; every item once over all ranks (the evaluation
        transform is deterministic, so any split gives the single-process matrix)."""
        if distributed.world_size() == 1:
            return dataset
        return Subset(dataset, distributed.shard_indices(len(dataset)))

    # ----- model ----------------------------------------------------------------------------
    def previous_checkpoint(self, step: int) -> dict[str, Any]:
        checkpoint = load_torch(self.store.step_dir(step - 1) / "checkpoint.pt")
        if "model_ref" in checkpoint:
            shared = load_torch(self.store.runs_root / checkpoint["model_ref"])
            checkpoint = {**checkpoint, "model": shared["model"]}
        return checkpoint

    def model_for_step(self, step: int) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """The model with the step's new classifier and a frozen copy of the previous one."""
        torch.manual_seed(derived_seed(self.seed, step, "init"))
        sizes = list(self.protocol.step_sizes[: step + 1])
        if step == 0:
            model = build_model(self.model_config, sizes, log=self.log).to(self.device)
            return distributed.convert_sync_batchnorm(model, self.device), None
        quiet = ModelConfig(**{**self.model_config.__dict__, "pretrained": "none"})
        model = build_model(quiet, sizes[:-1], log=lambda _: None)
        checkpoint = self.previous_checkpoint(step)
        model.load_state_dict(checkpoint["model"])
        self.method.load_state_dict(checkpoint["method"])
        old_model = freeze(copy.deepcopy(model)).to(self.device)
        model.add_classifier(sizes[-1])
        return distributed.convert_sync_batchnorm(model.to(self.device), self.device), old_model

    def context(self, step: int, model: torch.nn.Module,
                old_model: torch.nn.Module | None) -> StepContext:
        dataset = self.train_data(step)
        batch = self.recipe(step).batch_size

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            # each rank draws every batch (the training transform is random: the draws must
            # follow the single-process order) and keeps its slice, even an empty one (hooks
            # reduce over ranks at every batch); the slices sum to the whole
            for images, labels in self.loader(dataset, batch, shuffle=False):
                images, labels = distributed.shard(images), distributed.shard(labels)
                yield normalize(images.to(self.device)), labels.to(self.device)

        return StepContext(self.protocol, step, model, old_model, self.device, batches,
                           all_reduce=distributed.all_reduce_sum)

    # ----- steps ----------------------------------------------------------------------------
    def step0_parts(self) -> dict[str, Any]:
        train = self.index.select(self.protocol, 0, "train")
        test = self.index.select(self.protocol, 0, "val")
        return {
            "format": STEP0_FORMAT,
            "dataset": self.source.name,
            "data": identity(self.config)["data"],
            "classes": list(self.protocol.step_classes(0)),
            "train_files": _digest(s.name for s in train),
            "test_files": _digest(s.name for s in test),
            "train_lut": _digest(train_lut(self.protocol, 0).tolist()),
            "test_lut": _digest(test_lut(self.protocol, 0).tolist()),
            "eval_crop": self.protocol.eval_crop,
            "model": self.config["model"],
            "trainer": self.trainer,
            "seed": self.seed,
            "recipe": self.method.step0_recipe,
        }

    def train_and_evaluate(self, step: int, model: torch.nn.Module,
                           old_model: torch.nn.Module | None, epoch_checkpoint) -> tuple[Any, ...]:
        recipe = self.recipe(step)
        dataset = self.train_data(step)
        context = self.context(step, model, old_model)
        self.method.on_step_start(context)

        def loader(epoch: int) -> DataLoader:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, step, epoch, "order"))
            return self.loader(dataset, recipe.batch_size, shuffle=True, generator=generator)

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            # every rank draws the global batch (same order, same augmentations) and trains on
            # its slice: the inputs of a single-process run with the same global batch
            for images, labels in loader(epoch):
                yield distributed.shard(images), distributed.shard(labels)

        iterations = len(loader(0))
        started = time.perf_counter()
        history = train_step(context, self.method, recipe, batches, iterations, self.seed,
                             epoch_checkpoint, quiet=bool(self.config["quiet"]), log=self.log)
        trained = time.perf_counter() - started
        return context, history, trained

    def step_end(self, context: StepContext) -> None:
        """The method's step-end hook, from a seeded RNG: a hook's pass over the (randomly
        augmented) training data then gives the same result whether the step was trained here,
        resumed, or reused from the step-0 cache, and on any number of ranks."""
        torch.manual_seed(derived_seed(self.seed, context.step, "step end"))
        self.method.on_step_end(context)

    def run_step0(self) -> tuple[dict[str, Any], StepResult]:
        parts = self.step0_parts()
        key = step0_key(parts)
        cache = self.step0_cache
        reused = True
        # rank 0 alone takes the lock (a waiting rank would block the others' collectives) and
        # tells the others whether the cache holds this step 0
        with cache.lock(key) if distributed.is_main() else contextlib.nullcontext():
            model, _ = self.model_for_step(0)
            done = cache.is_done(key) if distributed.is_main() else False
            if distributed.all_reduce_sum(torch.tensor(float(done))).item() > 0:
                self.log(f"step 0: reusing the shared step-0 model {cache.directory(key)} "
                         "(same data, model, recipe and seed; no training)")
                shared = cache.checkpoint(key)
                model.load_state_dict(shared["model"])
                evaluation = cache.evaluation(key)
                context = self.context(0, model, None)
                self.method.on_step_start(context)
            else:
                reused = False
                context, history, seconds = self.train_and_evaluate(
                    0, model, None, cache.directory(key) / "epoch.pt")
                started = time.perf_counter()
                matrix = evaluate(model, self.test_loader(0), model.num_classes, self.device)
                evaluation = {"matrix": matrix.matrix.cpu().tolist(), "history": history,
                              "train_seconds": seconds,
                              "eval_seconds": time.perf_counter() - started}
                if distributed.is_main():
                    cache.save(key, {"model": model.state_dict()}, evaluation, parts)
                    (cache.directory(key) / "epoch.pt").unlink(missing_ok=True)
                distributed.barrier()
        self.step_end(context)
        info = {"key": key, "reused": reused, "path": str(cache.directory(key))}
        checkpoint = {"model_ref": cache.relative_checkpoint(key),
                      "method": self.method.state_dict()}
        timings = {} if reused else {"train_seconds": evaluation["train_seconds"],
                                     "eval_seconds": evaluation["eval_seconds"]}
        record = self.finish(0, torch.tensor(evaluation["matrix"]), evaluation["history"],
                             timings, info, checkpoint)
        return info, StepResult(0, record, trained=not reused, reused_step0=reused)

    def run_incremental(self, step: int) -> StepResult:
        model, old_model = self.model_for_step(step)
        context, history, seconds = self.train_and_evaluate(
            step, model, old_model, self.store.epoch_checkpoint(step))
        self.step_end(context)
        started = time.perf_counter()
        matrix = evaluate(model, self.test_loader(step), model.num_classes, self.device)
        timings = {"train_seconds": seconds, "eval_seconds": time.perf_counter() - started}
        checkpoint = {"model": model.state_dict(), "method": self.method.state_dict()}
        record = self.finish(step, matrix.matrix.cpu(), history, timings, None, checkpoint)
        return StepResult(step, record, trained=True, reused_step0=False)

    def finish(self, step: int, matrix: torch.Tensor, history: list[dict[str, float]],
               timings: dict[str, float], step0: dict[str, Any] | None,
               checkpoint: dict[str, Any]) -> dict[str, Any]:
        record = step_record(
            protocol=self.protocol, step=step, matrix=matrix, method=self.method.name,
            seed=self.seed, config=self.config, config_hash=self.hash, history=history,
            timings={k: round(v, 3) for k, v in timings.items()},
            data={"dataset": self.source.name, "root": str(self.source.root),
                  "train_images": len(self.index.select(self.protocol, step, "train")),
                  "test_images": len(self.index.select(self.protocol, step, "val"))},
            step0=step0, requested=self.requested,
        )
        if distributed.is_main():
            self.store.finish_step(step, record, checkpoint)
        distributed.barrier()  # the next step reads this one's checkpoint on every rank
        return record

    def run(self, steps: Iterable[int] | None = None) -> list[StepResult]:
        """Run (or resume) the given steps; done steps are read back, not recomputed."""
        wanted = list(range(self.protocol.num_steps) if steps is None else steps)
        if wanted and max(wanted) >= self.protocol.num_steps:
            raise BenchError(f"{self.protocol.name} has steps 0..{self.protocol.num_steps - 1}; "
                             f"--steps asked for {max(wanted)}")
        if distributed.is_main():
            self.store.write_config(self.config)
        results = []
        for step in range(max(wanted) + 1 if wanted else 0):
            if self.store.is_done(step):
                if step in wanted:
                    results.append(StepResult(step, self.store.record(step), False, False))
                continue
            if step not in wanted and step < min(wanted):
                raise BenchError(f"step {step} of this run is not done yet; run it first "
                                 f"(--steps {step}-{max(wanted)})")
            result = self.run_step0()[1] if step == 0 else self.run_incremental(step)
            results.append(result)
            scores = result.record["scores"]
            shown = ", ".join(f"{key} {scores[key]:.1f}" for key in ("old", "new", "all")
                              if scores[key] is not None)
            self.log(f"step {step} of {self.protocol.num_steps - 1} done: {shown}")
        return results
