"""Step-0 recipes: how step 0 is trained and what it records, by name.

Methods name a recipe (`Method.step0`); every method naming the same recipe shares one cached
step 0 per (protocol base, data, model, trainer recipe, seed), and with it what the recipe's
recorders recorded while it trained. Adding a recorder to a recipe changes the recipe's identity,
so cached step 0s without that record are not reused.

- `ce`: plain cross-entropy over the step-0 classes (FT, LwF, ILT, MiB, SDR, ...);
- `joint`: the same loss, for joint training's one step holding every class (never shared with
  an incremental step 0: it learns other classes);
- `ce+importance`: the same loss, recording parameter-importance statistics from every
  iteration's gradients (EWC's Fisher, PI's path integral, RW's score; each recorder registered
  by its method's module), so EWC, PI and RW share one step 0;
- recipes with another loss (LwF-MC's `bce`, ...) are registered by their method's module.
"""

from __future__ import annotations

from methods.base import Method, Recorder, Step0Recipe

_RECIPES: dict[str, type[Step0Recipe]] = {}


def register_step0(cls: type[Step0Recipe]) -> type[Step0Recipe]:
    if not cls.name or cls.name in _RECIPES:
        raise ValueError(f"step-0 recipe name {cls.name!r} is empty or already registered")
    _RECIPES[cls.name] = cls
    return cls


def register_recorder(recipe: str, recorder: type[Recorder]) -> type[Recorder]:
    """Make `recipe` record `recorder`'s statistic (recorder names are unique per recipe)."""
    cls = step0_recipe(recipe)
    if any(r.name == recorder.name for r in cls.recorders):
        raise ValueError(f"recipe {recipe} already records {recorder.name!r}")
    cls.recorders = (*cls.recorders, recorder)
    return recorder


def step0_recipe(name: str) -> type[Step0Recipe]:
    if name not in _RECIPES:
        raise KeyError(f"no step-0 recipe {name!r}; known: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def step0_recipe_names() -> list[str]:
    return sorted(_RECIPES)


def recipe_of(method: type[Method] | Method) -> type[Step0Recipe]:
    """The step-0 recipe a method names."""
    return step0_recipe(method.step0)


def step0_learner(method: Method) -> Step0Recipe:
    """The learner of a method's step 0: its step-0 recipe, on the method's protocol."""
    return recipe_of(method)(method.protocol)


@register_step0
class CrossEntropy(Step0Recipe):
    name = "ce"
    description = "cross-entropy over the step-0 classes, 255 ignored"


@register_step0
class JointCrossEntropy(Step0Recipe):
    name = "joint"
    description = "cross-entropy over every class of the setting in one step (joint training)"


@register_step0
class CrossEntropyWithImportance(Step0Recipe):
    name = "ce+importance"
    description = ("cross-entropy over the step-0 classes, recording parameter importance from "
                   "each iteration's gradients (EWC, PI, RW)")
