"""Composing a run's configuration with hydra, and resolving per-dataset recipe values.

Composition uses hydra's compose API (groups `data/`, `model/`, `trainer/`, `launcher/` under
`bench/conf`), so `key=value` overrides behave as in any hydra application. Recipe values may be
given per dataset (`epochs: {voc: 30, ade: 60}`); resolution picks the protocol's dataset, so the
resolved config holds only plain values. `bench.spec.RunSpec` turns the result into typed values.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.errors import BenchError

GROUPS = ("data", "model", "trainer", "launcher", "logger")
# Overrides that change where or how a run executes, not what it computes: never part of a
# run's identity, never stored with its inputs. The trainer's channels_last, compile and
# cudnn_benchmark change only the memory layout, kernel choice and fusion of the same float32
# (or bf16) arithmetic: like another GPU model, they reorder float operations at rounding level,
# so a step 0 trained with them is the same step 0 (trainer.precision, which rounds every
# activation to bf16, is identity).
EXECUTION_KEYS = ("runs_root", "quiet", "device", "data.root", "data.num_workers",
                  "data.cache_mb", "data.prefetch_factor", "launcher", "logger",
                  "trainer.eval_batch_size", "trainer.channels_last", "trainer.compile",
                  "trainer.cudnn_benchmark")


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def is_execution_override(override: str) -> bool:
    key = override_key(override)
    return any(key == k or key.startswith(k + ".") for k in EXECUTION_KEYS)


def compose_config(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The composed (not yet resolved) configuration as a plain dict (a fresh copy)."""
    return json.loads(_composed(tuple(overrides)))


@lru_cache(maxsize=64)
def _composed(overrides: tuple[str, ...]) -> str:
    try:
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            composed = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(
            f"bad configuration override in {' '.join(overrides) or '(none)'}: {first}. "
            "Overrides are key=value for existing keys (see `bench config`), "
            f"method.PARAM=value for a method's hyperparameter, or GROUP=CHOICE for "
            f"{', '.join(GROUPS)}"
        ) from None
    return json.dumps(OmegaConf.to_container(composed, resolve=True))


def per_dataset(value: Any, dataset: str) -> Any:
    """`{voc: 30, ade: 60}` -> the value for `dataset`; plain values pass through."""
    if isinstance(value, dict) and set(value) <= {"voc", "ade"} and value:
        if dataset not in value:
            raise BenchError(f"the recipe gives {value} but nothing for {dataset}")
        return value[dataset]
    return value


def resolve_for_dataset(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    resolved = json.loads(json.dumps(config))
    for group in ("trainer", "model"):
        resolved[group] = {k: per_dataset(v, dataset) for k, v in resolved[group].items()}
    return resolved
