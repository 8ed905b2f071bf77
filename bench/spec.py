"""A run as one typed value: `RunSpec`, resolved once from names, with an identity that covers
every input that changes a number.

    spec = RunSpec.from_names("voc-15-1", "mib", seed=0, overrides=("trainer.epochs=5",))

resolves the protocol with its knobs, the method with its hyperparameters (the method's
defaults, then its matching `per_protocol` entry, then its `per_recipe` entry for the trainer
recipe, then `method.PARAM=value` overrides), the
recipe of every step, the model and the data (name, synthetic sizes, and a digest of the content
of every split list the run uses). `spec.identity()` is all of that plus the spec format;
`spec.run_hash` names the run's directory, so a changed default, recipe or data set is a new run,
never a stale "done". The CLI, the sweep, the benchmarks and the tests build runs this way only.

What does not change a number (where runs are stored, the device, data-loading workers, the
launcher) is `spec.execution`, outside the identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.config import (
    compose_config,
    is_execution_override,
    override_key,
    resolve_for_dataset,
)
from bench.errors import BenchError
from protocols import Protocol, get_protocol

SPEC_FORMAT = 1
PRECISIONS = ("fp32", "bf16")
NAMED_KEYS = ("protocol", "method", "seed")
# what bench.engine.model builds (tests/test_bad_inputs.py checks the two agree)
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
OUTPUT_STRIDES = (8, 16, 32)
EXECUTORS = ("slurm", "local", "debug")
# A recipe setting that never changes a finished run's numbers (it only refuses diverged steps),
# so it is left out of the identity: a run with another bound is the same run.
NOT_IDENTITY = ("divergence_factor",)


def canonical_hash(payload: Any, length: int = 10) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ModelConfig:
    """Model settings. The paper setting is the default; the small synthetic-benchmark variant is
    e.g. ``ModelConfig(backbone="resnet18", aspp_channels=64)`` (optionally ``base_channels=32``).

    base_channels: ResNet width (torchvision's 64); smaller values build a narrow backbone, for
        which no ImageNet weights exist.
    pretrained: path to a torchvision ResNet state_dict; "auto" to use torchvision's hub cache
        if the file is there (never downloads); "synth" for the embedded data's stand-in
        (bench.engine.pretraining); None or "none" for random initialisation.
    """

    backbone: str = "resnet101"
    output_stride: int = 16
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.0
    base_channels: int = 64
    pretrained: str | None = None


@dataclass(frozen=True)
class StepRecipe:
    """The optimisation settings of one step (already resolved for the dataset and step)."""

    epochs: int
    lr: float
    batch_size: int
    crop: int
    momentum: float
    nesterov: bool
    weight_decay: float
    poly_power: float
    precision: str = "fp32"
    # a step diverged when an epoch's mean loss exceeds this multiple of its first iteration's
    divergence_factor: float = 100.0

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def identity(self) -> dict[str, Any]:
        """The settings that change a number (what run hashes and step-0 keys cover)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTITY}


@dataclass(frozen=True)
class DataSpec:
    """The data a run trains and is tested on. `digest` covers the content of every split list
    the run uses (image names, decoded label maps, image file sizes); `root` is where it lives
    on this machine, which is not part of the identity (another copy is the same data)."""

    dataset: str
    synth: tuple[tuple[str, int], ...] = ()
    digest: str = ""
    root: str | None = field(default=None, compare=False)

    @property
    def synthetic(self) -> bool:
        return self.dataset.startswith("synth-")

    @property
    def kind(self) -> str:
        return self.dataset.removeprefix("synth-")

    def identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "synth": dict(self.synth), "digest": self.digest}


@dataclass(frozen=True)
class Execution:
    """How and where a run executes: never part of its identity."""

    runs_root: str = "./runs"
    device: str = "auto"
    quiet: bool = False
    num_workers: int | str = 0
    cache_mb: int = 1024
    eval_batch_size: int = 8
    launcher: Mapping[str, Any] = field(default_factory=dict)
    prefetch_factor: int = 2
    channels_last: bool | str = "auto"  # auto: on CUDA
    compile: bool = False
    cudnn_benchmark: bool = True
    logger: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInputs:
    """The names a spec was resolved from (enough to resolve it again with today's code)."""

    protocol: str
    method: str
    seed: int
    overrides: tuple[str, ...]
    dataset: str

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "method": self.method, "seed": self.seed,
                "overrides": list(self.overrides), "dataset": self.dataset}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunInputs:
        return cls(str(raw["protocol"]), str(raw["method"]), int(raw["seed"]),
                   tuple(str(o) for o in raw.get("overrides", ())), str(raw["dataset"]))


@dataclass(frozen=True)
class RunSpec:
    """One run, fully resolved. Build it with `RunSpec.from_names`."""

    protocol: Protocol  # as requested, with its knobs
    method: str
    param_items: tuple[tuple[str, Any], ...]  # resolved hyperparameters, sorted by name
    seed: int
    recipe_name: str
    recipes: tuple[StepRecipe, ...]  # one per trained step (of `planned_protocol`)
    model: ModelConfig
    data: DataSpec
    inputs: RunInputs
    execution: Execution = field(default_factory=Execution, compare=False)

    # ----- derived ----------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        return dict(self.param_items)

    @property
    def method_class(self) -> type:
        from methods import get_method

        return get_method(self.method)

    @cached_property
    def planned_protocol(self) -> Protocol:
        """The protocol the method actually trains (joint training collapses the steps)."""
        return self.method_class.plan_protocol(self.protocol)

    @property
    def num_steps(self) -> int:
        return self.planned_protocol.num_steps

    def build_method(self) -> Any:
        """A fresh instance of the method with the resolved hyperparameters."""
        return self.method_class(self.planned_protocol, self.params)

    def identity(self) -> dict[str, Any]:
        """Every input that changes a number, as plain JSON values (as records store it)."""
        from methods.step0 import recipe_of

        return json.loads(json.dumps({
            "format": SPEC_FORMAT,
            "protocol": self.protocol.to_dict(),
            "method": {"name": self.method, "params": self.params,
                       "step0": recipe_of(self.method_class).identity(
                           self.method_class.step0_records)},
            "seed": self.seed,
            "recipe": {"name": self.recipe_name,
                       "steps": [r.identity() for r in self.recipes]},
            "model": dataclasses.asdict(self.model),
            "data": self.data.identity(),
        }))

    @cached_property
    def run_hash(self) -> str:
        return canonical_hash(self.identity())

    @cached_property
    def setup_hash(self) -> str:
        """The identity without the seed: what the seeds of one configuration share."""
        return canonical_hash({**self.identity(), "seed": None})

    def to_dict(self) -> dict[str, Any]:
        """What a run directory and every record store."""
        return {"hash": self.run_hash, "setup_hash": self.setup_hash,
                "identity": self.identity(), "inputs": self.inputs.to_dict()}

    @property
    def label(self) -> str:
        return f"{self.protocol.name}/{self.method}/seed{self.seed}"

    # ----- resolution -------------------------------------------------------------------------
    @classmethod
    def from_names(cls, protocol: str, method: str, seed: int = 0,
                   overrides: Sequence[str] = (), data_root: str | Path | None = None,
                   dataset: str | None = None, resolve_data: bool = True) -> RunSpec:
        """Resolve a run. `overrides` are hydra `key=value` overrides, `method.PARAM=value` for
        the method's hyperparameters, and `GROUP=CHOICE` (model=r101, trainer=sdr). With
        `resolve_data=False` the data digest is left empty (for comparing specs without the
        data at hand). Every user error is a BenchError naming the thing and the fix."""
        from methods import get_method

        requested = get_protocol(protocol)
        method_class = get_method(method)
        overrides = tuple(overrides)
        for override in overrides:
            if "=" not in override:
                raise BenchError(f"override {override!r} is not key=value (e.g. "
                                 "trainer.epochs=5)")
            if override_key(override) in NAMED_KEYS:
                key = override_key(override)
                raise BenchError(f"set the {key} with --{key}, not as an override ({override})")
        dataset = _dataset_name(requested.dataset, overrides, data_root, dataset)
        real = not dataset.startswith("synth-")
        given_groups = {override_key(o) for o in overrides}
        defaults = []
        if real:  # the paper model and the recipe of the paper the method reproduces
            defaults = [d for d in (f"model={method_class.real_model}",
                                    f"trainer={method_class.recipe}")
                        if override_key(d) not in given_groups]
        config = compose_config([*defaults, *(_hydra_override(o) for o in overrides)])
        config = resolve_for_dataset(config, requested.dataset)
        check_config(config, dataset)
        knobs = {key: value for key, value in (
            ("background_in_old_all", config["eval"]["background_in_old_all"]),
            ("eval_crop", config["eval"]["crop"]),
            ("void_as_background", config["eval"]["void_as_background"]),
        ) if value is not None}
        try:
            requested = requested.with_knobs(**knobs)
        except ValueError as error:
            raise BenchError(f"bad evaluation knob ({error}); eval.crop is center or full, the "
                             "others true or false") from None
        params = method_class.resolve_params(f"{requested.dataset}-{requested.setting}",
                                             config["method_params"],
                                             recipe=config["trainer"].get("name"))
        for key, value in params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise BenchError(f"method.{key}={shown(value)} is not allowed: "
                                 f"method.{key} must be a finite number")
        planned = method_class.plan_protocol(requested)
        trainer = config["trainer"]
        data_config = config["data"]
        synth = tuple(sorted((k, int(v)) for k, v in (data_config.get("synth") or {}).items()
                             if v is not None)) if not real else ()
        root = data_root if data_root is not None else data_config.get("root")
        spec = cls(
            protocol=requested, method=method_class.name,
            param_items=tuple(sorted(params.items())), seed=int(seed),
            recipe_name=str(trainer.get("name") or "unnamed"),
            recipes=tuple(step_recipe(trainer, step) for step in range(planned.num_steps)),
            model=model_config(config["model"]),
            data=DataSpec(dataset, synth, "", None if root is None else str(root)),
            inputs=RunInputs(requested.name if not knobs else protocol, method_class.name,
                             int(seed), tuple(o for o in overrides
                                              if not is_execution_override(o)), dataset),
            execution=execution(config, data_config),
        )
        return spec.with_data() if resolve_data else spec

    def with_data(self, log: Callable[[str], None] = print) -> RunSpec:
        """The spec with its data located (the embedded data generated on first use) and the
        digest of every split list it uses computed (indexing the labels once per root)."""
        from bench.data.sources import source_of

        source = source_of(self.data)
        digest = source.index(log=log).digest(self.planned_protocol)
        data = dataclasses.replace(self.data, digest=digest, root=str(source.root))
        return dataclasses.replace(self, data=data)

    def with_execution(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, execution=dataclasses.replace(self.execution,
                                                                       **changes))


def _hydra_override(override: str) -> str:
    """`method.PARAM=v` -> `+method_params.PARAM=v` (hydra parses the value)."""
    key = override_key(override)
    if key.startswith("method."):
        return "+method_params." + override.split("=", 1)[0].split("method.", 1)[1] + "=" + \
            override.split("=", 1)[1]
    return override


def _dataset_name(protocol_dataset: str, overrides: Sequence[str],
                  data_root: str | Path | None, dataset: str | None) -> str:
    """Which data set a run uses: the one named, a real one when a root is given (argument,
    `data.root` or CSS_BENCH_<VOC|ADE>_ROOT), else the embedded synthetic one."""
    from bench.data.sources import REAL_DATASETS, ROOT_VARIABLES, SYNTH_DATASETS

    given = {override_key(o): o.split("=", 1)[1] for o in overrides}
    if dataset is None and given.get("data.dataset") not in (None, "null"):
        dataset = given["data.dataset"]
    root_given = data_root is not None or given.get("data.root") not in (None, "null")
    if dataset is None:
        real = root_given or bool(os.environ.get(ROOT_VARIABLES[protocol_dataset]))
        dataset = protocol_dataset if real else f"synth-{protocol_dataset}"
    valid = REAL_DATASETS + SYNTH_DATASETS
    if dataset not in valid:
        raise BenchError(f"unknown dataset {dataset!r}; choose one of {', '.join(valid)}")
    if dataset.removeprefix("synth-") != protocol_dataset:
        kind = dataset.removeprefix("synth-")
        raise BenchError(f"the protocol is a {protocol_dataset.upper()} protocol but the dataset "
                         f"{dataset!r} is {kind.upper()}; use a {kind}-* protocol or "
                         f"--dataset {protocol_dataset} / synth-{protocol_dataset}")
    if dataset.startswith("synth-") and root_given:
        raise BenchError(f"--data-root does not apply to the embedded dataset {dataset}; "
                         "set CSS_BENCH_CACHE to choose where it is generated")
    return dataset


def step_recipe(trainer: Mapping[str, Any], step: int) -> StepRecipe:
    """The recipe of `step` from a resolved trainer config (step 0 or an incremental step),
    every value checked (`check_trainer`)."""
    check_trainer(trainer)
    epochs = trainer["epochs"] if step == 0 else (trainer.get("epochs_incremental")
                                                  or trainer["epochs"])
    return StepRecipe(
        epochs=int(epochs), lr=float(trainer["lr"] if step == 0 else trainer["lr_incremental"]),
        batch_size=int(trainer["batch_size"]), crop=int(trainer["crop"]),
        momentum=float(trainer["momentum"]), nesterov=bool(trainer["nesterov"]),
        weight_decay=float(trainer["weight_decay"]), poly_power=float(trainer["poly_power"]),
        precision=str(trainer.get("precision", "fp32")),
        divergence_factor=float(trainer.get("divergence_factor", 100.0)))


def model_config(model: Mapping[str, Any]) -> ModelConfig:
    check_model(model)
    return ModelConfig(
        backbone=str(model["backbone"]), output_stride=int(model["output_stride"]),
        aspp_channels=int(model["aspp_channels"]),
        base_channels=int(model.get("base_channels", 64)),
        pretrained=None if model["pretrained"] is None else str(model["pretrained"]))


def execution(config: Mapping[str, Any], data: Mapping[str, Any]) -> Execution:
    trainer = config["trainer"]
    return Execution(
        runs_root=str(config["runs_root"]), device=str(config["device"]),
        quiet=bool(config["quiet"]), num_workers=data.get("num_workers", 0),
        cache_mb=int(data.get("cache_mb", 0) or 0),
        eval_batch_size=int(trainer.get("eval_batch_size", 8)),
        launcher=dict(config.get("launcher") or {}),
        prefetch_factor=int(data.get("prefetch_factor", 2) or 2),
        channels_last=trainer.get("channels_last", "auto"),
        compile=bool(trainer.get("compile", False)),
        cudnn_benchmark=bool(trainer.get("cudnn_benchmark", True)),
        logger=dict(config.get("logger") or {}))


# ----- validation: every value checked before anything is written ----------------------------
def shown(value: Any) -> str:
    """A value as the user typed it (`null`, `true`, `abc`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _refuse(key: str, value: Any, allowed: str) -> BenchError:
    return BenchError(f"{key}={shown(value)} is not allowed: {key} must be {allowed}")


def check_integer(key: str, value: Any, minimum: int, nullable: bool = False,
                  why: str = "") -> None:
    if value is None and nullable:
        return
    allowed = f"an integer >= {minimum}" + (" (or null)" if nullable else "") + (
        f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _refuse(key, value, allowed)


def check_number(key: str, value: Any, allowed: str, test: Callable[[float], bool]) -> None:
    """A finite number for which `test` holds; `allowed` says which in words."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not test(float(value))):
        raise _refuse(key, value, allowed)


def check_flag(key: str, value: Any, nullable: bool = False) -> None:
    if not (isinstance(value, bool) or (nullable and value is None)):
        raise _refuse(key, value, "true or false" + (" (or null)" if nullable else ""))


def check_choice(key: str, value: Any, choices: Sequence[Any], nullable: bool = False) -> None:
    if not (value in choices and type(value) is type(choices[0])) and not (
            nullable and value is None):
        raise _refuse(key, value, "one of " + ", ".join(shown(c) for c in choices)
                      + (" (or null)" if nullable else ""))


def check_text(key: str, value: Any, nullable: bool = False) -> None:
    if not ((isinstance(value, str) and value.strip()) or (nullable and value is None)):
        raise _refuse(key, value, "a non-empty text" + (" (or null)" if nullable else ""))


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """Every value of a resolved trainer recipe (`trainer.*`), by type and range."""
    t = "trainer."
    check_text(t + "name", trainer.get("name"), nullable=True)
    check_integer(t + "epochs", trainer.get("epochs"), 1)
    check_integer(t + "epochs_incremental", trainer.get("epochs_incremental"), 1, nullable=True)
    for key in ("lr", "lr_incremental"):
        check_number(t + key, trainer.get(key), "a finite number > 0", lambda v: v > 0)
    # BatchNorm in training needs two values per channel: ASPP's image-pooling branch has one
    # per image, so a batch of one image cannot train
    check_integer(t + "batch_size", trainer.get("batch_size"), 2,
                  why="BatchNorm needs two images per batch")
    check_integer(t + "crop", trainer.get("crop"), 1)
    check_integer(t + "eval_batch_size", trainer.get("eval_batch_size", 8), 1)
    check_number(t + "momentum", trainer.get("momentum"), "a number in [0, 1)",
                 lambda v: 0 <= v < 1)
    check_flag(t + "nesterov", trainer.get("nesterov"))
    if trainer["nesterov"] and trainer["momentum"] == 0:
        raise _refuse(t + "momentum", 0, "> 0 with trainer.nesterov=true (Nesterov momentum "
                      "needs a momentum); set trainer.nesterov=false or a momentum")
    for key in ("weight_decay", "poly_power"):
        check_number(t + key, trainer.get(key), "a finite number >= 0", lambda v: v >= 0)
    check_choice(t + "precision", trainer.get("precision", "fp32"), PRECISIONS)
    check_number(t + "divergence_factor", trainer.get("divergence_factor", 100.0),
                 "a finite number > 1", lambda v: v > 1)
    channels_last = trainer.get("channels_last", "auto")
    if channels_last != "auto":
        check_flag(t + "channels_last", channels_last)
    check_flag(t + "compile", trainer.get("compile", False))
    check_flag(t + "cudnn_benchmark", trainer.get("cudnn_benchmark", True))


def check_model(model: Mapping[str, Any]) -> None:
    check_choice("model.backbone", model.get("backbone"), BACKBONES)
    check_choice("model.output_stride", model.get("output_stride"), OUTPUT_STRIDES)
    check_integer("model.aspp_channels", model.get("aspp_channels"), 1)
    check_integer("model.base_channels", model.get("base_channels", 64), 1)
    check_text("model.pretrained", model.get("pretrained"), nullable=True)


def check_config(config: Mapping[str, Any], dataset: str) -> None:
    """Every value of a composed configuration, before anything is written: the recipe, the
    model, the data, the evaluation knobs, where and how it executes, and the launcher."""
    check_trainer(config["trainer"])
    check_model(config["model"])
    if str(config["model"].get("pretrained")) == "synth" and not dataset.startswith("synth-"):
        raise BenchError(f"model.pretrained=synth is the embedded data's pretraining, not for "
                         f"{dataset}: set model.pretrained=auto (ImageNet weights from "
                         "torchvision's cache), a PATH, or none")
    data = config["data"]
    for key, value in (data.get("synth") or {}).items():
        low = 0 if key in ("seed", "void_width") else 1
        check_integer(f"data.synth.{key}", value, low, nullable=True)
    if dataset.startswith("synth-"):
        from bench.data.synth import synth_spec

        synth_spec(dataset, **{k: v for k, v in (data.get("synth") or {}).items()
                               if v is not None})
    if data.get("num_workers", 0) != "auto":
        check_integer("data.num_workers", data.get("num_workers", 0), 0)
    check_integer("data.prefetch_factor", data.get("prefetch_factor", 2), 1)
    check_integer("data.cache_mb", data.get("cache_mb", 0), 0)
    check_text("data.root", data.get("root"), nullable=True)
    evaluation = config.get("eval") or {}
    check_flag("eval.background_in_old_all", evaluation.get("background_in_old_all"), True)
    check_choice("eval.crop", evaluation.get("crop"), ("center", "full"), nullable=True)
    check_flag("eval.void_as_background", evaluation.get("void_as_background"), True)
    check_text("runs_root", config.get("runs_root"))
    check_flag("quiet", config.get("quiet"))
    device = config.get("device")
    if not (isinstance(device, str) and (device in ("auto", "cpu", "cuda")
                                         or (device.startswith("cuda:")
                                             and device[5:].isdigit()))):
        raise _refuse("device", device, "auto, cpu, cuda or cuda:N")
    check_launcher(config.get("launcher") or {})


def check_launcher(launcher: Mapping[str, Any]) -> None:
    """The launcher's values (the time limit's format is checked by the sweep, as sbatch's)."""
    key = "launcher."
    check_choice(key + "executor", launcher.get("executor", "local"), EXECUTORS)
    check_text(key + "partition", launcher.get("partition"), nullable=True)
    check_integer(key + "gpus_per_job", launcher.get("gpus_per_job") or 0, 0)
    check_integer(key + "tasks_per_job", launcher.get("tasks_per_job"), 1, nullable=True)
    check_integer(key + "cpus_per_task", launcher.get("cpus_per_task", 1), 1)
    check_integer(key + "mem_gb", launcher.get("mem_gb"), 1, nullable=True)
    check_integer(key + "threads", launcher.get("threads"), 1, nullable=True)
    check_integer(key + "max_num_timeout", launcher.get("max_num_timeout", 3), 0)
    if not isinstance(launcher.get("time", "1"), str | int) or isinstance(
            launcher.get("time"), bool):
        raise _refuse(key + "time", launcher.get("time"), "a time limit as sbatch --time "
                      "takes (minutes, H:M:S or D-H:M:S)")


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`key.path: old -> new` for every leaf where two identities differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{path}: (absent) -> {new[key]!r}")
            elif key not in new:
                lines.append(f"{path}: {old[key]!r} -> (absent)")
            else:
                lines += differences(old[key], new[key], path)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            lines += differences(a, b, f"{prefix}[{index}]")
        return lines
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def stale_reason(spec: dict[str, Any] | None) -> str | None:
    """None when `spec` (a record's or a run directory's) resolves to the same identity today;
    otherwise which fields differ, or why it cannot be resolved."""
    if spec is None:
        return "the record predates run specs (record format 1): rerun it"
    try:
        inputs = RunInputs.from_dict(spec["inputs"])
        today = RunSpec.from_names(inputs.protocol, inputs.method, inputs.seed, inputs.overrides,
                                   dataset=inputs.dataset, resolve_data=False)
    except (BenchError, KeyError, TypeError, ValueError) as error:
        return f"its names no longer resolve ({error})"
    stored = dict(spec.get("identity") or {})
    now = today.identity()
    for identity in (stored, now):
        identity["data"] = {k: v for k, v in (identity.get("data") or {}).items()
                            if k != "digest"}
    changed = differences(stored, now)
    if not changed:
        return None
    return "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
