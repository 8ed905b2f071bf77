"""HOW a step is learned: one module per method, a registry, the shared Method interface."""

from methods import (  # noqa: F401  (registers)
    cil,
    dkd,
    ewc,
    ft,
    ilt,
    joint,
    lwf,
    lwf_mc,
    mib,
    pi,
    plop,
    rw,
    sdr,
    sdr_mib,
    step0,  # noqa: F401  (the step-0 recipes, before the methods naming them)
)
from methods.base import (
    IterationState,
    Learner,
    LossInputs,
    Method,
    ModelOutput,
    Recorder,
    Step0Recipe,
    StepContext,
)
from methods.registry import get_method, method_names, register, unregister

__all__ = ["IterationState", "Learner", "LossInputs", "Method", "ModelOutput", "Recorder",
           "Step0Recipe", "StepContext", "get_method", "method_names", "register", "unregister"]
