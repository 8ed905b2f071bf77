"""Fine-tuning: cross-entropy on the current step's labels, nothing against forgetting."""

from methods.base import Method
from methods.registry import register


@register
class FineTuning(Method):
    name = "ft"
    description = "fine-tuning: cross-entropy, 255 ignored (the lower bound)"
