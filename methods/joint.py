"""Joint training: every class at once, the offline upper bound of every setting."""

from __future__ import annotations

import dataclasses

from methods.base import Method
from methods.registry import register
from protocols.protocol import Protocol


@register
class Joint(Method):
    name = "joint"
    description = "joint: all classes in one step with cross-entropy (the offline upper bound)"
    # Its step 0 holds every class, so it never shares a step 0 with the incremental methods
    # (the step-0 cache key covers the classes too; the distinct recipe makes it explicit).
    step0 = "joint"

    @classmethod
    def plan_protocol(cls, protocol: Protocol) -> Protocol:
        """One step with every class of the setting, in the setting's class order (so the
        channels are those of the incremental runs and results compare class by class)."""
        return dataclasses.replace(protocol, step_sizes=(sum(protocol.step_sizes),),
                                   name=f"{protocol.name}-joint")
