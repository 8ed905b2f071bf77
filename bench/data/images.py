"""Reading image and label files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError

_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


def read_image(path: Path) -> Image.Image:
    """An RGB image; a missing, corrupt or truncated file raises BenchError naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise BenchError(f"image file {path} does not exist (listed in the split file)") from None
    except _READ_ERRORS as error:
        raise BenchError(f"image file {path} is corrupt or truncated ({error}); "
                         "replace it with a good copy") from None


def read_label(path: Path) -> np.ndarray:
    """A label map as a uint8 array of class indices (palette PNGs give their indices)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise BenchError(
                    f"label file {path} has image mode {image.mode}; a label map must be a "
                    "single-channel PNG of class indices (mode P or L)"
                )
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise BenchError(f"label file {path} does not exist (listed in the split file)") from None
    except _READ_ERRORS as error:
        raise BenchError(f"label file {path} is corrupt or truncated ({error}); "
                         "replace it with a good copy") from None


def label_histogram(path: Path, num_labels: int) -> np.ndarray:
    """Pixel counts per label value (length 256), after checking every value is a valid label.

    Valid values are 0..num_labels-1 and 255 (void); anything else is a corrupt or foreign label
    file, and is reported with the file and the value rather than trained on.
    """
    counts = np.bincount(read_label(path).ravel(), minlength=256)
    invalid = np.flatnonzero(counts[num_labels:255])
    if invalid.size:
        value = int(invalid[0]) + num_labels
        raise BenchError(
            f"label file {path} contains the value {value}, which is not a class of this dataset "
            f"(valid: 0..{num_labels - 1} and 255 for void); fix or remove the file"
        )
    return counts
