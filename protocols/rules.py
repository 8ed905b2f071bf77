"""Per-step image filtering and label remapping, exactly as the reference code of the field.

Let new = classes introduced at step t (background excluded), old = classes of the steps before t,
seen = old + new + {0, 255}. MiB's `filter_images` (Cermelli et al., CVPR 2020) keeps:
- overlap: a training image iff it contains at least one class of new;
- disjoint: iff it contains at least one class of new and every class in it is in seen;
- sequential: the same images as disjoint.
Test images at step t: validation images with at least one class of old + new (background
excluded). Everything works on a presence matrix (files x labels, plus one last column for 255)
so that a protocol's split is a vectorised selection, not a second pass over the label files.

Bump RULES_VERSION whenever a rule below changes: cached indices record it and are rebuilt.
"""

from __future__ import annotations

import numpy as np

from protocols.protocol import Protocol

RULES_VERSION = 1
VOID = 255


def train_mask(presence: np.ndarray, protocol: Protocol, step: int) -> np.ndarray:
    """Boolean mask over files: which training images step `step` sees."""
    new = list(protocol.new_classes(step))
    keep = presence[:, new].any(axis=1)
    if protocol.mode in ("disjoint", "sequential"):
        future = list(protocol.future_classes(step))
        keep &= ~presence[:, future].any(axis=1)
    return keep


def test_mask(presence: np.ndarray, protocol: Protocol, step: int) -> np.ndarray:
    """Boolean mask over files: which validation images are tested after step `step`."""
    seen = [c for c in protocol.seen_classes(step) if c != 0]
    return presence[:, seen].any(axis=1)


def train_lut(protocol: Protocol, step: int) -> np.ndarray:
    """A 256-entry table mapping raw label values to training targets (model channels or 255).

    overlap/disjoint: only new classes keep a label; background, old and future classes become
    background, and so does 255 when `void_as_background`. sequential: every seen class keeps its
    label, 255 stays ignored (future classes cannot occur in its images; they are ignored too).
    """
    lut = np.full(256, VOID, dtype=np.uint8)
    if protocol.mode == "sequential":
        labelled = protocol.seen_classes(step)
    else:
        lut[: protocol.num_labels] = 0
        labelled = protocol.new_classes(step)
    for label in labelled:
        lut[label] = protocol.channel(label)
    lut[0] = 0
    lut[VOID] = 0 if protocol.void_as_background and protocol.mode != "sequential" else VOID
    return lut


def test_lut(protocol: Protocol, step: int) -> np.ndarray:
    """A 256-entry table for test labels: seen classes keep their channel, the rest is ignored."""
    lut = np.full(256, VOID, dtype=np.uint8)
    for label in protocol.seen_classes(step):
        lut[label] = protocol.channel(label)
    if protocol.background_ignored_at_test:
        lut[0] = VOID
    return lut
