"""Which files each (protocol, step, split) uses: computed once from the label files, cached.

Scanning label files is the expensive part, so it is done once per (dataset root, split): every
label file is read in parallel into a presence matrix (files x labels, plus a last column for 255)
and validated on the way; a hash of each decoded label map is kept with it. Per-step selections
are then vectorised (`protocols.rules`) and written as plain split files (one image id per line)
that a user can read, diff and reuse.

`digest(protocol)` is the content digest of every split list a run uses: image names, the hash of
each decoded label map and each image file's size. It is part of a run's identity: another copy
of the same data gives the same digest, edited or regenerated data a new one.

The cache lives next to the data (`<root>/.css-bench/`) or, when the root is read-only, under the
user cache. Every cached file records the rules version and a fingerprint of the file list
(names, sizes and modification times of the label files); a mismatch rebuilds it and says so,
never silently.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.data.images import label_histogram
from bench.data.layouts import Sample
from bench.data.reference_splits import greedy_partition, missing_partition, read_imported
from bench.errors import BenchError
from bench.store.atomic import write_atomic, write_text_atomic
from protocols.protocol import Protocol
from protocols.rules import RULES_VERSION, test_mask, train_mask

PRESENCE_VERSION = 2  # 2: a hash of every decoded label map is kept with the presence matrix
_CHUNK = 64


def fingerprint(samples: list[Sample]) -> str:
    """A hash of the file list (label names, sizes and modification times): any change to a
    label file invalidates the cache."""
    digest = hashlib.sha256()
    for sample in samples:
        try:
            stat = sample.label.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{sample.name}\t{sample.label.name}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()[:16]


def cache_dir_for(root: Path) -> Path:
    """`<root>/.css-bench` when writable, else the user cache keyed by the root's path."""
    local = root / ".css-bench"
    try:
        local.mkdir(exist_ok=True)
        probe = local / ".write-test"
        probe.touch()
        probe.unlink()
        return local
    except OSError:
        base = Path(os.environ.get("CSS_BENCH_CACHE", Path.home() / ".cache" / "css-bench"))
        key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return base / "index" / key


def _scan_chunk(paths: list[Path], num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(paths), num_labels + 1), dtype=bool)
    hashes = np.zeros(len(paths), dtype=np.int64)
    for row, path in enumerate(paths):
        counts, label = label_histogram(path, num_labels)
        rows[row, :num_labels] = counts[:num_labels] > 0
        rows[row, num_labels] = counts[255] > 0
        content = hashlib.blake2b(f"{label.shape}".encode() + label.tobytes(), digest_size=8)
        hashes[row] = int.from_bytes(content.digest(), "little", signed=True)
    return rows, hashes


def scan_presence(samples: list[Sample], num_labels: int,
                  workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read every label file (in parallel): the boolean presence matrix and the label hashes."""
    paths = [s.label for s in samples]
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(chunks) <= 1:
        parts = [_scan_chunk(chunk, num_labels) for chunk in chunks]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            parts = list(pool.map(_scan_chunk, chunks, [num_labels] * len(chunks)))
    if not parts:
        return np.zeros((0, num_labels + 1), dtype=bool), np.zeros(0, dtype=np.int64)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


class SplitIndex:
    """Presence matrices and per-step file selections of one dataset root, cached on disk."""

    def __init__(self, root: Path, samples_of: Callable[[str], list[Sample]], num_labels: int,
                 cache_dir: Path | None = None, log: Callable[[str], None] = print,
                 workers: int | None = None, synthetic: bool = False) -> None:
        self.root = root
        self.samples_of = samples_of
        self.num_labels = num_labels
        self.cache_dir = cache_dir or cache_dir_for(root)
        self.log = log
        self.workers = workers
        # the embedded data's ADE partition is computed (MiB's greedy rule), a real one imported
        self.synthetic = synthetic
        self._partitions: dict[str, list[list[int]]] = {}
        self._presence: dict[str, tuple[list[Sample], np.ndarray, str]] = {}
        self._hashes: dict[str, dict[str, int]] = {}
        self._selected: dict[tuple[str, int, str], list[Sample]] = {}
        self._digests: dict[tuple[str, tuple[int, ...]], str] = {}
        self._image_sizes: dict[Path, int] = {}

    def presence(self, split: str) -> tuple[list[Sample], np.ndarray, str]:
        """(samples, presence matrix, file-list fingerprint) of a split, scanning at most once."""
        if split in self._presence:
            return self._presence[split]
        samples = self.samples_of(split)
        print_ = fingerprint(samples)
        path = self.cache_dir / f"presence-{split}.npz"
        cached = self._load_presence(path, print_, len(samples))
        if cached is None:
            matrix, hashes = scan_presence(samples, self.num_labels, self.workers)
            buffer = io.BytesIO()
            np.savez(buffer, presence=matrix, label_hashes=hashes, fingerprint=print_,
                     version=PRESENCE_VERSION)
            write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        else:
            matrix, hashes = cached
        self._presence[split] = (samples, matrix, print_)
        self._hashes[split] = {s.name: int(h) for s, h in zip(samples, hashes, strict=True)}
        return self._presence[split]

    def _load_presence(self, path: Path, print_: str,
                       count: int) -> tuple[np.ndarray, np.ndarray] | None:
        if not path.is_file():
            self.log(f"indexing {count} label files of {self.root} (once; cached in {path.parent})")
            return None
        try:
            with np.load(path) as cached:
                version, cached_print = int(cached["version"]), str(cached["fingerprint"])
                if version == PRESENCE_VERSION and cached_print == print_:
                    return cached["presence"], cached["label_hashes"]
        except (OSError, ValueError, KeyError) as error:
            self.log(f"the label index {path} is unreadable ({error}); re-indexing")
            return None
        self.log(f"the label index {path} was built for another file list or format "
                 f"(fingerprint {cached_print} v{version}, now {print_} v{PRESENCE_VERSION}); "
                 "re-indexing")
        return None

    def select(self, protocol: Protocol, step: int, split: str) -> list[Sample]:
        """The samples of `split` that `protocol` uses at `step` (train or test rules); read or
        computed once per index, like the split file it is kept in."""
        key = (protocol.name, step, split)
        if key not in self._selected:
            self._selected[key] = self._select(protocol, step, split)
        return self._selected[key]

    def _select(self, protocol: Protocol, step: int, split: str) -> list[Sample]:
        samples, matrix, print_ = self.presence(split)
        if split == "train":
            chosen = self._reference(protocol, step, samples, matrix, print_)
            if chosen is not None:
                return chosen
        path = self.cache_dir / "splits" / protocol.name / f"{split}-step{step}.txt"
        header = f"# css-bench split: rules v{RULES_VERSION}, files {print_}"
        cached = self._load_split(path, header)
        if cached is not None:
            by_name = {s.name: s for s in samples}
            return [by_name[name] for name in cached]
        rule = train_mask if split == "train" else test_mask
        chosen = [samples[i] for i in np.flatnonzero(rule(matrix, protocol, step))]
        write_text_atomic(path, "\n".join([header, *(s.name for s in chosen)]) + "\n")
        return chosen

    def _reference(self, protocol: Protocol, step: int, samples: list[Sample],
                   matrix: np.ndarray, print_: str) -> list[Sample] | None:
        """The training list of a step from imported reference files, or for a partition
        protocol of the embedded data the greedy partition; None where the rules select."""
        imported = read_imported(self.cache_dir, protocol.name, step, print_)
        if imported is not None:
            by_name = {s.name: s for s in samples}
            unknown = [name for name in imported if name not in by_name]
            if unknown:
                raise BenchError(f"the imported split of {protocol.name} step {step} names "
                                 f"{unknown[0]!r}, which {self.root} does not hold; re-import "
                                 "with `bench data import-splits`")
            return [by_name[name] for name in imported]
        if protocol.mode != "partition":
            return None
        if not self.synthetic:
            raise missing_partition(protocol, self.root)
        if protocol.name not in self._partitions:
            self._partitions[protocol.name] = greedy_partition(matrix, protocol)
        return [samples[i] for i in self._partitions[protocol.name][step]]

    def _load_split(self, path: Path, header: str) -> list[str] | None:
        if not path.is_file():
            return None
        lines = path.read_text().splitlines()
        if lines and lines[0] == header:
            return lines[1:]
        found = lines[0] if lines else "an empty file"
        self.log(f"split file {path} was made with other rules or files ({found}; "
                 f"now {header[2:]}); rebuilding it")
        return None

    def digest(self, protocol: Protocol, steps: Sequence[int] | None = None) -> str:
        """The content digest of the split lists `protocol` uses at `steps` (default: all):
        per step and split, each image's name, the hash of its decoded label map and the size
        of its image file."""
        chosen = tuple(range(protocol.num_steps) if steps is None else steps)
        key = (protocol.name, chosen)
        if key not in self._digests:
            content = hashlib.sha256()
            for step in chosen:
                for split in ("train", "val"):
                    self.presence(split)
                    hashes = self._hashes[split]
                    content.update(f"step {step} {split}\n".encode())
                    for sample in self.select(protocol, step, split):
                        content.update(f"{sample.name}\t{hashes[sample.name]}\t"
                                       f"{self._image_size(sample.image)}\n".encode())
            self._digests[key] = content.hexdigest()[:16]
        return self._digests[key]

    def _image_size(self, path: Path) -> int:
        if path not in self._image_sizes:
            try:
                self._image_sizes[path] = path.stat().st_size
            except OSError:
                self._image_sizes[path] = -1
        return self._image_sizes[path]
