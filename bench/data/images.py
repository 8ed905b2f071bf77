"""Reading image and label files, with errors that name the file.

Training images are decoded by `read_image_tensor`: torchvision's libjpeg-turbo decoder straight
into a uint8 (3, H, W) tensor for JPEG files, PIL for anything else (and for the JPEGs the
torchvision decoder refuses, so a corrupt file is always reported by PIL's reader). Measured on
the 500x375 JPEGs of `benchmarks/loader_speed.py`: 1.07 ms per image against 1.70 ms for PIL
plus the array copy, the same pixels (see the README's loader figures). torchvision 0.29 marks
its decoders deprecated in favour of TorchCodec; where they are gone, PIL decodes everything.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError

try:
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
except ImportError:  # a torchvision without its image decoders
    decode_jpeg = None
warnings.filterwarnings("ignore", category=DeprecationWarning,
                        message="The image decoding and encoding capabilities of TorchVision")

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
                         "replace it with a good copy (`bench data check --deep` lists every "
                         "bad file)") from None


def read_image_tensor(path: Path) -> torch.Tensor:
    """An RGB image as a uint8 (3, H, W) tensor; errors as `read_image`."""
    if decode_jpeg is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError):
            pass  # a missing, corrupt or unusual file: PIL reads it or names the problem
    pixels = np.asarray(read_image(path))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


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
                         "replace it with a good copy (`bench data check --deep` lists every "
                         "bad file)") from None


def label_histogram(path: Path, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts per label value (length 256) and the label map, after checking every value
    is a valid label.

    Valid values are 0..num_labels-1 and 255 (void); anything else is a corrupt or foreign label
    file, and is reported with the file and the value rather than trained on.
    """
    label = read_label(path)
    counts = np.bincount(label.ravel(), minlength=256)
    invalid = np.flatnonzero(counts[num_labels:255])
    if invalid.size:
        value = int(invalid[0]) + num_labels
        raise BenchError(
            f"label file {path} contains the value {value}, which is not a class of this dataset "
            f"(valid: 0..{num_labels - 1} and 255 for void); fix or remove the file"
        )
    return counts, label
