"""Whether the image and label files of a layout can be read, file by file (`bench data check`).

The quick check reads every file's header (format, size) and its last bytes: a JPEG ends with
its end-of-image marker, a PNG with its IEND chunk, so a file cut short by a failed copy or
download is found without decoding it. `deep` decodes every file completely, which also finds
damage inside a file. An image and its label map must have the same size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bench.data.layouts import Sample

_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
_TAIL_BYTES = 1024
_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


@dataclass(frozen=True)
class BadFile:
    path: Path
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


def _ends_complete(path: Path, image_format: str) -> bool:
    marker = _END_MARKERS.get(image_format)
    if marker is None:
        return True
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(handle.tell() - _TAIL_BYTES, 0))
        return marker in handle.read()


def file_problem(path: Path, deep: bool) -> tuple[str | None, tuple[int, int] | None]:
    """(why `path` cannot be used or None, its size when its header could be read)."""
    try:
        with Image.open(path) as image:
            size, image_format = image.size, str(image.format)
            if deep:
                image.load()
    except FileNotFoundError:
        return "missing (listed in the split)", None
    except _READ_ERRORS as error:
        return f"cannot be decoded ({error})", None
    if not _ends_complete(path, image_format):
        return f"truncated ({image_format} without its end marker)", size
    return None, size


def bad_files(samples: list[Sample], deep: bool = False) -> Iterator[BadFile]:
    """Every unusable image or label file of `samples`, in order."""
    for sample in samples:
        image_problem, image_size = file_problem(sample.image, deep)
        label_problem, label_size = file_problem(sample.label, deep)
        if image_problem:
            yield BadFile(sample.image, image_problem)
        if label_problem:
            yield BadFile(sample.label, label_problem)
        if image_size and label_size and image_size != label_size:
            yield BadFile(sample.image, f"is {image_size[0]}x{image_size[1]} but its label map "
                                        f"{sample.label.name} is {label_size[0]}x{label_size[1]}")
