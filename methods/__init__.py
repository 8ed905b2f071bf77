"""HOW a step is learned: one module per method, a registry, the shared Method interface."""

from methods import ft, ilt, joint, lwf, lwf_mc, mib, sdr, sdr_mib  # noqa: F401  (registers)
from methods.base import LossInputs, Method, StepContext
from methods.registry import get_method, method_names, register

__all__ = ["LossInputs", "Method", "StepContext", "get_method", "method_names", "register"]
