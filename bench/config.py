"""Run configuration: composed by hydra, resolved to plain values, hashed into a run's identity.

Composition uses hydra's compose API (groups `data/`, `model/`, `trainer/` under `bench/conf`),
so `key=value` overrides behave as in any hydra application. Recipe values may be given per
dataset (`epochs: {voc: 30, ade: 60}`); resolution picks the protocol's dataset, so the resolved
config holds only plain values. Its hash, over everything but the keys in `NOT_IDENTITY`, names
the run: a changed config is a new run, never a silent overwrite.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.errors import BenchError

# Keys that change where or how a run executes, not what it computes.
NOT_IDENTITY = ("runs_root", "quiet", "device", "data.root", "data.num_workers", "data.cache_mb",
                "launcher")
GROUPS = ("data", "model", "trainer", "launcher")


def compose_config(overrides: list[str]) -> dict[str, Any]:
    """The composed (not yet resolved) configuration as a plain dict."""
    try:
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            composed = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(
            f"bad configuration override in {' '.join(overrides) or '(none)'}: {first}. "
            "Overrides are key=value for existing keys (see `bench config`), "
            f"+key=value to add one, or GROUP=CHOICE for {', '.join(GROUPS)}"
        ) from None
    return OmegaConf.to_container(composed, resolve=True)  # type: ignore[return-value]


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


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines what a run computes."""
    kept = json.loads(json.dumps(config))
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = kept
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return kept


def config_hash(config: dict[str, Any], length: int = 10) -> str:
    canonical = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        node = node[key]
    return node
