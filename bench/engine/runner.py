"""Running every step of a `RunSpec`: the orchestration over steps.

Every step goes the same way: build the step's model (the previous step's weights, a new
classifier, a frozen copy of the previous model), train it with the learner (step 0: the
method's step-0 recipe, or the shared step-0 cache), evaluate it, call the method's step-end
hook, and record. The runner asks the method for its hooks and never branches on its name.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bench.data.loading import resolve_num_workers
from bench.data.sources import source_of
from bench.data.split_index import SplitIndex
from bench.engine import distributed
from bench.engine.batchnorm import for_ranks
from bench.engine.compute import ComputeSettings
from bench.engine.cost import CostMeter, device_description, peak_memory, synchronize
from bench.engine.evaluation import evaluate
from bench.engine.hooks import (
    BufferAveraging,
    EpochCheckpoint,
    NonFiniteCheck,
    PolyLR,
    Progress,
    Soundness,
    UnsoundStep,
    require_sound,
    unsound_tensors,
)
from bench.engine.model import build_model
from bench.engine.pretraining import SYNTH, backbone_of, pretraining_spec
from bench.engine.scenario import Scenario, step0_identity
from bench.engine.seeds import derived_seed
from bench.engine.tensorboard import TensorBoardLogger, check_logger, log_scores
from bench.engine.trainer import StepTrainer, freeze
from bench.errors import BenchError
from bench.spec import ModelConfig, RunSpec
from bench.store.files import load_torch, save_torch
from bench.store.records import reused_cost, step_cost, step_record
from bench.store.runs import RunStore
from bench.store.step0_cache import Step0Cache, step0_key
from methods.base import Learner, StepContext
from methods.step0 import recipe_of, step0_learner

STEP0_FORMAT = 3  # 3: seeded per-sample crops (bench.data.transforms); 2 drew from torch


@dataclass
class StepResult:
    step: int
    record: dict[str, Any]
    trained: bool
    reused_step0: bool


@dataclass
class Trained:
    """What training (or the shared step-0 cache) gave a step."""

    matrix: torch.Tensor
    history: list[dict[str, float]]
    timings: dict[str, float]
    step0_record: dict[str, Any] | None = None
    step0: dict[str, Any] | None = None  # the shared step 0 used (step 0 only)
    cost: dict[str, Any] | None = None  # what this process spent on the step (records.step_cost)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return torch.device(name)


class Runner:
    def __init__(self, spec: RunSpec, log: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.log = log
        self.protocol = spec.planned_protocol
        self.method = spec.build_method()
        self.source = source_of(spec.data)
        index = self.source.index(log=log)
        if spec.data.digest and index.digest(self.protocol) != spec.data.digest:
            raise BenchError(f"the data at {self.source.root} changed after this run was "
                             "resolved (its split lists' digest differs); resolve the run again")
        self.device = pick_device(spec.execution.device)
        execution = spec.execution
        self.compute = ComputeSettings.resolve(execution.channels_last, execution.compile,
                                               execution.cudnn_benchmark, self.device)
        self.tensorboard = check_logger(dict(execution.logger))
        self.scenario = Scenario(
            self.protocol, index, self.source.describe(), spec.recipes[0].crop, spec.seed,
            self.device, num_workers=resolve_num_workers(execution.num_workers,
                                                         spec.data.synthetic),
            cache_bytes=int(execution.cache_mb) << 20, eval_batch_size=execution.eval_batch_size,
            prefetch_factor=execution.prefetch_factor)
        self.run_dir = RunStore(execution.runs_root).run(spec.protocol.name, spec.method,
                                                         spec.seed, spec.run_hash)
        self.step0_cache = Step0Cache(execution.runs_root)

    # ----- orchestration --------------------------------------------------------------------
    def run(self, steps: Iterable[int] | None = None) -> list[StepResult]:
        """Run (or resume) the given steps; done steps are read back, not recomputed. Steps are
        computed under the run's lock: a second process running the same run waits, then
        reads what the first finished. A run with nothing left to compute is only read (a
        finished run in a read-only store works)."""
        wanted = list(range(self.protocol.num_steps) if steps is None else steps)
        if wanted and max(wanted) >= self.protocol.num_steps:
            raise BenchError(f"{self.protocol.name} has steps 0..{self.protocol.num_steps - 1}; "
                             f"--steps asked for {max(wanted)}")
        last = max(wanted) + 1 if wanted else 0
        if all(self.run_dir.is_done(step) for step in range(last)):
            return [StepResult(step, self.run_dir.record(step), False, False) for step in wanted]
        with self.computing():
            return self._run_steps(wanted, last)

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """The run's lock, taken by rank 0 (the other ranks wait for it at the barrier)."""
        with (self.run_dir.lock(self.log) if distributed.is_main()
              else contextlib.nullcontext()):
            distributed.barrier()
            yield

    def _run_steps(self, wanted: list[int], last: int) -> list[StepResult]:
        results = []
        for step in range(last):
            if self.run_dir.is_done(step):
                if step in wanted:
                    results.append(StepResult(step, self.run_dir.record(step), False, False))
                continue
            if step not in wanted and step < min(wanted):
                raise BenchError(f"step {step} of this run is not done yet; run it first "
                                 f"(--steps {step}-{max(wanted)})")
            result = self.run_step(step)
            results.append(result)
            scores = result.record["scores"]
            shown = ", ".join(f"{key} {scores[key]:.1f}" for key in ("old", "new", "all")
                              if scores[key] is not None)
            self.log(f"step {step} of {self.protocol.num_steps - 1} done: {shown}")
        return results

    def run_step(self, step: int) -> StepResult:
        model, old_model = self.models_for(step)
        context = self.context(step, model, old_model)
        if step == 0:
            trained = self.shared_step0(model, context)
        else:
            self.method.on_step_start(context)
            trained = self.train_and_evaluate(step, model, old_model, self.method)
        context.step0_record = trained.step0_record
        # the step-end hook from a seeded RNG: a pass over the (randomly augmented) training data
        # then gives the same result whether the step was trained here, resumed or reused from
        # the step-0 cache, and on any number of ranks
        torch.manual_seed(derived_seed(self.spec.seed, step, "step end"))
        self.method.on_step_end(context)
        require_sound(model, f"step {step}, after the method's step end")
        checkpoint: dict[str, Any] = {"method": self.method.state_dict()}
        if trained.step0 is not None:
            checkpoint["model_ref"] = self.step0_cache.relative_checkpoint(trained.step0["key"])
        else:
            checkpoint["model"] = model.state_dict()
        record = step_record(
            spec=self.spec.to_dict(), protocol=self.protocol, requested=self.spec.protocol,
            method=self.spec.method, seed=self.spec.seed, step=step, matrix=trained.matrix,
            history=trained.history, timings={k: round(v, 3) for k, v in trained.timings.items()},
            data={"dataset": self.spec.data.dataset, "digest": self.spec.data.digest,
                  "train_images": self.scenario.train_count(step),
                  "test_images": self.scenario.test_count(step)},
            step0=trained.step0, cost=trained.cost)
        if distributed.is_main():
            self.run_dir.write_spec(self.spec.to_dict())
            root = None if self.spec.data.synthetic else str(self.source.root.resolve())
            self.run_dir.finish_step(step, record, checkpoint, data_root=root)
            if self.tensorboard:
                log_scores(self.run_dir.tensorboard_dir(step), step, record["scores"],
                           trained.cost)
        distributed.barrier()  # the next step reads this one's checkpoint on every rank
        reused = bool(trained.step0 and trained.step0["reused"])
        return StepResult(step, record, trained=not reused, reused_step0=reused)

    # ----- models ---------------------------------------------------------------------------
    def models_for(self, step: int) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """The model with the step's new classifier and a frozen copy of the previous one."""
        # before seeding: pretraining in this process (or not) must not move the RNG
        backbone = pretrained_backbone(self.spec, self.log) if step == 0 else None
        torch.manual_seed(derived_seed(self.spec.seed, step, "init"))
        sizes = list(self.protocol.step_sizes[: step + 1])
        if step == 0:
            model = build_model(self.spec.model, sizes, log=self.log,
                                backbone_state=backbone).to(self.device)
            return for_ranks(model, self.device), None
        quiet = ModelConfig(**{**self.spec.model.__dict__, "pretrained": "none"})
        model = build_model(quiet, sizes[:-1], log=lambda _: None)
        checkpoint = self.checkpoint(step - 1)
        model.load_state_dict(checkpoint["model"])
        self.method.load_state_dict(checkpoint["method"])
        old_model = freeze(copy.deepcopy(model)).to(self.device)
        model.add_classifier(sizes[-1])
        return for_ranks(model.to(self.device), self.device), old_model

    def checkpoint(self, step: int) -> dict[str, Any]:
        """The step's checkpoint, its model read from the shared step-0 cache where it is one."""
        checkpoint = self.run_dir.checkpoint(step)
        if "model_ref" in checkpoint:
            path = self.run_dir.runs_root / checkpoint["model_ref"]
            shared = load_torch(path, f"delete {path.parent} and {self.run_dir.step_dir(0)} to "
                                      "train step 0 again")
            checkpoint = {**checkpoint, "model": shared["model"]}
        return checkpoint

    def context(self, step: int, model: torch.nn.Module,
                old_model: torch.nn.Module | None) -> StepContext:
        batch_size = self.spec.recipes[step].batch_size
        return StepContext(self.protocol, step, model, old_model, self.device,
                           lambda: self.scenario.pass_batches(step, batch_size),
                           all_reduce=distributed.all_reduce_sum)

    # ----- training -------------------------------------------------------------------------
    def train_and_evaluate(self, step: int, model: torch.nn.Module,
                           old_model: torch.nn.Module | None, learner: Learner,
                           epoch_checkpoint: Any = None) -> Trained:
        recipe = self.spec.recipes[step]
        ranks = distributed.world_size()
        if recipe.batch_size < ranks:
            raise BenchError(f"trainer.batch_size={recipe.batch_size} is the global batch and "
                             f"must give every one of the {ranks} ranks at least one image: "
                             f"set trainer.batch_size >= {ranks} or use fewer tasks")
        checkpoint = epoch_checkpoint or self.run_dir.epoch_checkpoint(step)
        # the meter before the checkpoint hook: its seconds are saved with each epoch
        meter = CostMeter(self.device, report=lambda progress: self.run_dir.write_progress(
            step, progress))
        save = save_torch if epoch_checkpoint else self._save_run_epoch
        hooks = [PolyLR(), NonFiniteCheck(), BufferAveraging(), Soundness(), meter,
                 EpochCheckpoint(checkpoint, save, self._load_epoch, self.log)]
        trainer = StepTrainer(
            model, old_model, learner, recipe,
            lambda epoch: self.scenario.train_batches(step, epoch, recipe.batch_size),
            self.scenario.iterations(step, recipe.batch_size), step, self.spec.seed,
            self.device, hooks, compute=self.compute)
        trainer.hooks.append(Progress(trainer.loss_history, self.spec.execution.quiet,
                                      self.log))
        if self.tensorboard:
            trainer.hooks.append(TensorBoardLogger(self.run_dir.tensorboard_dir(step),
                                                   int(self.spec.execution.logger["every"]),
                                                   meter))
        history = trainer.train()
        synchronize(self.device)
        started = time.perf_counter()
        matrix = evaluate(model, self.scenario.test_loader(step), model.num_classes,
                          self.device, bf16=recipe.bf16, predict=learner.predict)
        synchronize(self.device)
        evaluated = time.perf_counter() - started
        timings = {"train_seconds": meter.seconds, "eval_seconds": evaluated}
        cost = step_cost(train_seconds=meter.seconds, eval_seconds=evaluated,
                         device=device_description(self.device), train_images=meter.images,
                         peak_memory=peak_memory(self.device))
        return Trained(matrix.matrix.cpu(), history, timings, cost=cost)

    def _save_run_epoch(self, path: Any, state: Any) -> None:
        """An epoch checkpoint in the run directory: the run's spec goes first (a run
        directory exists only once something of the run is kept)."""
        self.run_dir.write_spec(self.spec.to_dict())
        save_torch(path, state)

    def _load_epoch(self, path: Any) -> Any:
        return load_torch(path, f"delete {path} to restart this step from its first epoch")

    def shared_step0(self, model: torch.nn.Module, context: StepContext) -> Trained:
        """Step 0 from the shared cache, or trained with the method's step-0 recipe and put
        there. Rank 0 alone takes the lock (a waiting rank would block the others'
        collectives) and tells the others whether the cache holds this step 0."""
        key = step0_key(self.step0_parts())
        cache = self.step0_cache
        info = {"key": key, "path": cache.relative_directory(key)}
        with cache.lock(key) if distributed.is_main() else contextlib.nullcontext():
            done = cache.is_done(key) if distributed.is_main() else False
            if distributed.all_reduce_sum(torch.tensor(float(done))).item() > 0:
                self.log(f"step 0: reusing the shared step-0 model {cache.directory(key)} "
                         "(same data, model, recipe and seed; no training)")
                shared = cache.checkpoint(key)
                model.load_state_dict(shared["model"])
                if unsound_tensors(model):  # written before css-bench checked soundness
                    raise UnsoundStep(f"the shared step-0 model {cache.directory(key)} has "
                                      f"non-finite values ({', '.join(unsound_tensors(model)[:3])})"
                                      f"; delete {cache.directory(key)} to train it again")
                entry = cache.evaluation(key)
                cost = reused_cost(device=device_description(self.device), entry=info["path"],
                                   entry_cost=entry.get("cost"))
                return Trained(torch.tensor(entry["matrix"]), entry["history"], {},
                               shared["step0_record"], {**info, "reused": True}, cost)
            learner = step0_learner(self.method)
            learner.on_step_start(context)
            trained = self.train_and_evaluate(0, model, None, learner,
                                              cache.directory(key) / "epoch.pt")
            trained.step0_record = learner.state_dict()
            trained.step0 = {**info, "reused": False}
            require_sound(model, "step 0, before it is shared")  # the cache holds sound models
            if distributed.is_main():
                cache.save(key, {"model": model.state_dict(),
                                 "step0_record": trained.step0_record},
                           {"matrix": trained.matrix.tolist(), "history": trained.history,
                            "train_seconds": trained.timings["train_seconds"],
                            "eval_seconds": trained.timings["eval_seconds"],
                            "cost": trained.cost},
                           self.step0_parts())
                (cache.directory(key) / "epoch.pt").unlink(missing_ok=True)
            distributed.barrier()
        return trained

    def step0_parts(self) -> dict[str, Any]:
        return step0_parts(self.spec, self.scenario.index)


def step0_parts(spec: RunSpec, index: SplitIndex) -> dict[str, Any]:
    """Everything a run's step 0 computes from: data, classes and label tables, model, step-0
    recipe values, seed and the method's step-0 recipe (loss and records). Runs with equal parts
    share one step 0 (whatever their method, protocol or trainer recipe's name)."""
    return {
        "format": STEP0_FORMAT,
        "dataset": spec.data.dataset,
        **step0_identity(spec.planned_protocol, index),
        "model": dataclasses.asdict(spec.model),
        "recipe": spec.recipes[0].identity(),
        "seed": spec.seed,
        "step0_recipe": recipe_of(spec.method_class).identity(),
    }


def pretrained_backbone(spec: RunSpec, log: Callable[[str], None] = print
                        ) -> dict[str, torch.Tensor] | None:
    """The backbone state_dict `spec` starts from with `model.pretrained=synth`, pretraining it
    first if no run holds it; None for any other `model.pretrained` (build_model loads those)."""
    if spec.model.pretrained != SYNTH:
        return None
    inner = pretraining_spec(spec)
    runner = Runner(inner, log=lambda line: log(f"pretraining: {line}"))
    if not runner.run_dir.is_done(0):
        log(f"model.pretrained={SYNTH}: pretraining the backbone once (joint training on "
            f"{inner.data.dataset} seed {dict(inner.data.synth).get('seed')}, "
            f"{inner.recipes[0].epochs} epochs), kept in {runner.run_dir.path}")
    (result,) = runner.run([0])
    state = runner.checkpoint(0)["model"]
    log(f"model: {spec.model.backbone} backbone pretrained on the embedded data "
        f"(run {inner.run_hash}, joint mIoU {result.record['scores']['all']:.1f})")
    return backbone_of(state)
