"""Records, samples and the Dataset base class shared by every adapter.

An adapter only has to list its files (``scan``); filtering, ordering, parallel
decoding, mask checks, hashing and ``describe`` live here so that every adapter behaves
the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import itertools
import os
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from robusttest import faults
from robusttest.errors import (
    ConfigError,
    DataError,
    InputError,
    RobustTestWarning,
    UnknownNameError,
)
from robusttest.imageio import (
    DEFAULT_MAX_PIXELS,
    MIN_SIDE,
    DecodedImage,
    check_size,
    read_header,
    read_image,
)

Task = Literal["segmentation", "classification"]
TASKS: tuple[str, ...] = ("segmentation", "classification")
SPLITS: tuple[str, ...] = ("all", "test", "train")
_HINT_BYTES = 64 * 1024


HELDOUT_PERCENT = 20


def heldout_patient(patient_id: str, dataset: str) -> bool:
    """True for the ~20% of patients in the fixed test split (stable across machines)."""
    digest = hashlib.sha256(f"robusttest-split-v1|{dataset}|{patient_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 100 < HELDOUT_PERCENT


class BadImageWarning(RobustTestWarning):
    """An image (or one of its masks) could not be decoded and was skipped."""


# What a dataset does with an image it cannot read: raise, skip it (with a warning), or
# collect it and go on (the engine then lists every one and fails the run).
BAD_IMAGE_POLICIES: tuple[str, ...] = ("error", "skip", "collect")
BadImagePolicy = Literal["error", "skip", "collect"]


@dataclass(frozen=True)
class Record:
    """One image as listed by its dataset: known before any pixel is decoded."""

    image_id: str
    patient_id: str
    path: Path
    labels: Mapping[str, int] | None = None
    mask_paths: Mapping[str, tuple[Path, ...]] | None = None  # structure -> files to OR
    pixel_spacing_mm: float | None = None  # of the image as stored
    meta: Mapping[str, str] = field(default_factory=dict)
    bit_depth: int | None = None  # bits holding data, when the listing says (manifest)


@dataclass(frozen=True)
class Sample:
    """One decoded image with its targets."""

    image_id: str
    patient_id: str
    image: np.ndarray  # float32 H×W in [0, 1], native resolution, bone bright
    masks: Mapping[str, np.ndarray] | None  # structure -> bool H×W
    labels: Mapping[str, int] | None
    pixel_spacing_mm: float | None
    meta: Mapping[str, str]


@dataclass(frozen=True)
class PairwiseTask:
    """Binary task between two findings: images positive for exactly one of them.

    ``target(labels)`` is 1 for ``positive``, 0 for ``negative`` (e.g. Pneumothorax vs
    Atelectasis); images positive for both or neither are not part of the task.
    """

    positive: str
    negative: str

    @classmethod
    def parse(cls, value: PairwiseTask | str | Sequence[str]) -> PairwiseTask:
        if isinstance(value, PairwiseTask):
            return value
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace("-vs-", ",").replace(" vs ", ",").split(",")]
        else:
            parts = [str(p).strip() for p in value]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ConfigError(
                f"pairwise: {value!r} is not two different labels; "
                "give e.g. 'Pneumothorax-vs-Atelectasis' or ('Pneumothorax', 'Atelectasis')"
            )
        return cls(parts[0], parts[1])

    @property
    def names(self) -> tuple[str, str]:
        return (self.positive, self.negative)

    def selects(self, labels: Mapping[str, int]) -> bool:
        return int(labels.get(self.positive, 0)) + int(labels.get(self.negative, 0)) == 1

    def target(self, labels: Mapping[str, int]) -> int:
        return int(labels.get(self.positive, 0))

    def __str__(self) -> str:
        return f"{self.positive}-vs-{self.negative}"


# ----------------------------------------------------------------------------- helpers


def content_hint(path: Path) -> str:
    """size + hash of the first and last 64 KiB: cheap, mtime-independent, copy-stable."""
    try:
        size = path.stat().st_size
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            h.update(fh.read(_HINT_BYTES))
            if size > 2 * _HINT_BYTES:
                fh.seek(size - _HINT_BYTES)
                h.update(fh.read(_HINT_BYTES))
            elif size > _HINT_BYTES:
                h.update(fh.read())
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}"
    return f"{size}:{h.hexdigest()[:32]}"


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding; None when unknown.

    Runs once per file when some datasets are opened: a header read, never a decode.
    """
    header = read_header(path)
    return None if header is None else (header.width, header.height)


def read_mask(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a binary mask file (PNG/GIF/BMP/TIFF/.npy) into a bool H×W array.

    0/1 and 0/255 encodings are both accepted: anything above half of the file's range
    (or above 0 for 0/1 files) is inside. The size is checked from the header first, as
    for images.
    """
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    header = read_header(path)
    if header is not None:
        check_size(path, header.width, header.height, max_pixels)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as opened:
                opened.load()
                im: Image.Image = opened
                if im.mode in ("P", "PA", "LA", "RGB", "RGBA", "CMYK", "YCbCr"):
                    im = im.convert("L")
                arr = np.asarray(im)
    except Exception as exc:  # PIL/numpy raise many types for broken files
        raise DataError(f"{path}: cannot decode mask ({exc}); the file may be truncated") from None
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataError(f"{path}: mask has shape {arr.shape}; expected a 2-D binary image")
    if arr.dtype == bool:
        return np.ascontiguousarray(arr)
    hi = float(arr.max()) if arr.size else 0.0
    if hi <= 1.0:
        return np.ascontiguousarray(arr > 0)
    if np.issubdtype(arr.dtype, np.integer):
        return np.ascontiguousarray(arr > np.iinfo(arr.dtype).max // 2)
    return np.ascontiguousarray(arr > hi / 2)


def size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[0]}" if len(shape) == 2 else str(shape)


def resolve_root(
    root: str | Path | None,
    adapter: str,
    default_dir: str,
    looks_right: Callable[[Path], bool],
    expected: str,
) -> Path:
    """Find the dataset folder: ``root``, or ``root/<default_dir>``, or $ROBUSTTEST_DATA.

    Pointing at the corpus root (the folder holding nih-cxr14/, montgomery/, ...) works too,
    so one --data value serves every adapter.
    """
    if root is None:
        env = os.environ.get("ROBUSTTEST_DATA")
        if not env:
            raise DataError(
                f"{adapter}: no data folder given; pass root=<folder holding {expected}> "
                "(--data) or set ROBUSTTEST_DATA"
            )
        base = Path(env)
        candidates = [base / default_dir, base]
    else:
        base = Path(root).expanduser()
        candidates = [base, base / default_dir]
    if not base.exists():
        raise DataError(f"{adapter}: {base} does not exist; expected a folder holding {expected}")
    if not base.is_dir():
        raise DataError(f"{adapter}: {base} is not a folder; expected a folder holding {expected}")
    for cand in candidates:
        if cand.is_dir() and looks_right(cand):
            return cand
    raise DataError(
        f"{adapter}: expected {expected} under {candidates[0]}; "
        f"point --data at the folder that holds {expected}"
    )


def parse_01(value: str) -> int | None:
    """'0'/'1' (also '0.0', 'true', 'false') -> int; '' -> None; anything else raises."""
    v = value.strip().lower()
    if v == "":
        return None
    if v in ("1", "1.0", "true", "yes"):
        return 1
    if v in ("0", "0.0", "false", "no"):
        return 0
    raise ValueError(value)


# ----------------------------------------------------------------------------- Dataset


class Dataset(abc.ABC):
    """Base class of every adapter.

    Subclasses set the class attributes, store their own options, call
    ``super().__init__(root, **common_options)`` and implement ``scan``; they may override
    ``read_pixels`` (how an image file is decoded), ``read_masks`` and ``split_ids``.
    """

    name: str = "dataset"
    tasks: ClassVar[tuple[str, ...]] = ("segmentation",)  # first = default
    # Every record of a segmentation dataset must carry masks (records without are dropped
    # and counted); classification needs labels.
    structures: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        structures: Sequence[str] | str | None = None,
        split: str = "all",
    ) -> None:
        self.root: Path | None = Path(root) if root is not None else None
        chosen = task or self.tasks[0]
        if chosen not in self.tasks:
            raise ConfigError(
                f"{self.name}: task={chosen!r} is not supported; choose one of {', '.join(self.tasks)}"
            )
        self.task: Task = chosen  # type: ignore[assignment]
        if split not in SPLITS:
            raise ConfigError(f"{self.name}: split={split!r}; choose one of {', '.join(SPLITS)}")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigError(f"{self.name}: limit={limit!r}; give a positive integer or None")
        self.split = split
        self.limit = limit
        self.pairwise: PairwiseTask | None = PairwiseTask.parse(pairwise) if pairwise else None
        self.skipped: list[tuple[str, str]] = []  # (image_id, reason): on_bad_image='skip'
        self.unreadable: list[tuple[str, str]] = []  # the same, on_bad_image='collect'
        self.bit_depths: dict[str, int] = {}  # "12-bit (sBIT)" -> images decoded so
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.bit_depth: int | None = None
        self.counts: dict[str, Any] = {}  # adapter-specific numbers for describe()
        self.filters: list[dict[str, Any]] = []
        self._hash: str | None = None

        found = list(self.scan())
        self.counts.setdefault("found", len(found))
        if not found:
            raise DataError(f"{self.name}: no images found under {self.root}")
        self.records: Sequence[Record] = tuple(
            self._filter(found, _as_names(labels), _as_names(structures))
        )

    # -- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def scan(self) -> Iterable[Record]:
        """All records the folder holds, before the generic filters (any order)."""

    def configure_decoding(
        self, *, max_pixels: int | None = None, bit_depth: int | None = None
    ) -> None:
        """The pixel limit and the bit depth of every image (a suite's ``data:`` keys);
        a manifest's ``bit_depth`` column still wins for its rows."""
        if max_pixels is not None:
            if isinstance(max_pixels, bool) or not isinstance(max_pixels, int):
                raise ConfigError(f"max_pixels: {max_pixels!r} is not a whole number")
            if max_pixels < MIN_SIDE * MIN_SIDE:
                raise ConfigError(f"max_pixels: {max_pixels} is not >= {MIN_SIDE * MIN_SIDE}")
            self.max_pixels = max_pixels
        if bit_depth is not None:
            if isinstance(bit_depth, bool) or not isinstance(bit_depth, int):
                raise ConfigError(f"bit_depth: {bit_depth!r} is not a whole number")
            if not 1 <= bit_depth <= 32:
                raise ConfigError(f"bit_depth: {bit_depth} is not in [1, 32]")
            self.bit_depth = bit_depth
            self._hash = None  # the images read differently: another manifest

    def read_pixels(self, record: Record) -> DecodedImage:
        """Decode the image file; override for raw formats."""
        return read_image(
            record.path,
            max_pixels=self.max_pixels,
            bit_depth=record.bit_depth if record.bit_depth is not None else self.bit_depth,
        )

    def read_masks(self, record: Record, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """One bool mask per structure: the OR of its files; sizes must match the image."""
        out: dict[str, np.ndarray] = {}
        for structure, paths in (record.mask_paths or {}).items():
            if structure not in self.structures:
                continue
            merged: np.ndarray | None = None
            for p in paths:
                m = read_mask(p, self.max_pixels)
                if m.shape != shape:
                    raise DataError(
                        f"{self.name}: mask {p} is {size_text(m.shape)} but image {record.path} "
                        f"is {size_text(shape)}; masks must have the image's size"
                    )
                merged = m if merged is None else (merged | m)
            if merged is not None:
                out[structure] = merged
        return out

    def split_ids(self, split: str) -> set[str] | None:
        """image_ids of ``split`` ('test'/'train'); adapters with official lists override."""
        raise ConfigError(f"{self.name}: split={split!r} is not available; use split='all'")

    def sample_spacing(self, record: Record, decoded: DecodedImage) -> float | None:
        return (
            record.pixel_spacing_mm
            if record.pixel_spacing_mm is not None
            else decoded.pixel_spacing_mm
        )

    # -- filters ------------------------------------------------------------------------
    def _step(self, name: str, value: Any, before: int, after: list[Record], why: str) -> None:
        self.filters.append({"filter": name, "value": value, "before": before, "after": len(after)})
        if not after:
            raise DataError(
                f"{self.name}: the {name} filter ({value!r}) left no images of {before}: {why}"
            )

    def _filter(
        self,
        records: list[Record],
        labels: tuple[str, ...] | None,
        structures: tuple[str, ...] | None,
    ) -> list[Record]:
        records.sort(key=lambda r: r.image_id)
        for a, b in itertools.pairwise(records):
            if a.image_id == b.image_id:
                raise DataError(
                    f"{self.name}: image id {a.image_id!r} appears twice ({a.path} and {b.path}); "
                    "image ids must be unique"
                )
        if self.task == "segmentation":
            if structures is not None:
                unknown = [s for s in structures if s not in self.structures]
                if unknown:
                    raise UnknownNameError("structure", unknown[0], self.structures)
                self.structures = structures
            # A dataset without any reference masks (e.g. a DICOM folder) still serves
            # label-free robustness checks (clean vs noisy prediction), so keep it whole.
            if self.structures:
                before = len(records)
                records = [
                    r
                    for r in records
                    if r.mask_paths and any(s in r.mask_paths for s in self.structures)
                ]
                self.counts["without_masks"] = before - len(records)
                self._step(
                    "has-masks",
                    list(self.structures),
                    before,
                    records,
                    f"no image has a mask for {', '.join(self.structures)}",
                )
        else:
            if structures is not None:
                raise ConfigError(f"{self.name}: structures= only applies to task='segmentation'")
            if self.labels:
                before = len(records)
                records = [r for r in records if r.labels is not None]
                self.counts["without_labels"] = before - len(records)
                self._step("has-labels", True, before, records, "no image has labels")
        if self.split != "all":
            ids = self.split_ids(self.split)
            if ids is not None:
                before = len(records)
                records = [r for r in records if r.image_id in ids]
                self._step(
                    "split",
                    self.split,
                    before,
                    records,
                    f"none of the present images is in the {self.split} list",
                )
        wanted = labels
        if self.pairwise is not None:
            if labels is not None:
                raise ConfigError(f"{self.name}: give either labels= or pairwise=, not both")
            wanted = self.pairwise.names
        if wanted is not None:
            unknown = [n for n in wanted if n not in self.labels]
            if unknown:
                raise UnknownNameError(f"{self.name} label", unknown[0], self.labels)
            keep = tuple(wanted)
            self.labels = keep
            records = [
                dataclasses.replace(r, labels={k: r.labels[k] for k in keep if k in r.labels})
                if r.labels is not None
                else r
                for r in records
            ]
            self.filters.append(
                {
                    "filter": "labels",
                    "value": list(keep),
                    "before": len(records),
                    "after": len(records),
                }
            )
        if self.pairwise is not None:
            before = len(records)
            pw = self.pairwise
            records = [r for r in records if r.labels is not None and pw.selects(r.labels)]
            self._step(
                "pairwise",
                str(pw),
                before,
                records,
                f"no image is positive for exactly one of {pw.positive} and {pw.negative}",
            )
        if self.limit is not None:
            before = len(records)
            records = records[: self.limit]
            self.filters.append(
                {"filter": "limit", "value": self.limit, "before": before, "after": len(records)}
            )
        return records

    # -- public API -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} task={self.task} n={len(self)} root={self.root}>"
        )

    def load(self, record: Record) -> Sample:
        """Decode one record: image, masks (segmentation only) and spacing."""
        try:
            decoded = self.read_pixels(record)
        except InputError as exc:  # a malformed file in a dataset is a data problem
            raise DataError(str(exc)) from None
        image = decoded.pixels
        masks = None
        if self.task == "segmentation" and record.mask_paths:
            masks = self.read_masks(record, (int(image.shape[0]), int(image.shape[1])))
        return Sample(
            image_id=record.image_id,
            patient_id=record.patient_id,
            image=image,
            masks=masks,
            labels=dict(record.labels) if record.labels is not None else None,
            pixel_spacing_mm=self.sample_spacing(record, decoded),
            meta={**record.meta, "bit_depth": decoded.depth_label},
        )

    def iter_samples(
        self,
        workers: int = 2,
        on_bad_image: BadImagePolicy = "error",
        records: Sequence[Record] | None = None,
    ) -> Generator[Sample, None, None]:
        """Decode the records in order, ``workers`` at a time.

        ``records``: a part of ``self.records`` to decode (a shard's image range);
        default all of them.

        At most ``2 * workers`` decodes are in flight, so memory stays bounded whatever
        the dataset size. An image that cannot be read: 'error' raises the DataError
        naming the file; 'skip' warns, appends (image_id, reason) to ``self.skipped`` and
        goes on; 'collect' appends it to ``self.unreadable`` and goes on without a warning
        (the caller reports them all). Each pass starts both lists afresh.
        workers=0 decodes in the calling thread.
        """
        # Checked here, not inside the generator, so a bad argument fails at the call.
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(
                f"on_bad_image={on_bad_image!r}; choose one of {', '.join(BAD_IMAGE_POLICIES)}"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers={workers!r}; give an integer >= 0")
        return self._iter(workers, on_bad_image, self.records if records is None else records)

    def _iter(
        self, workers: int, policy: str, todo: Sequence[Record]
    ) -> Generator[Sample, None, None]:
        self.skipped.clear()
        self.unreadable.clear()
        self.bit_depths.clear()
        if workers == 0:
            for rec in todo:
                faults.checkpoint("decode")
                try:
                    sample = self.load(rec)
                except DataError as exc:
                    self._report_or_raise(rec, exc, policy)
                    continue
                yield self._counted(sample)
            return
        window = 2 * workers
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"robusttest-{self.name}")
        pending: deque[tuple[Record, Future[Sample]]] = deque()
        try:
            records = iter(todo)
            while True:
                while len(pending) < window:
                    nxt = next(records, None)
                    if nxt is None:
                        break
                    pending.append((nxt, pool.submit(self.load, nxt)))
                if not pending:
                    return
                rec, fut = pending.popleft()
                faults.checkpoint("decode")  # where Ctrl-C lands while decoding is slow
                try:
                    sample = fut.result()
                except DataError as exc:
                    self._report_or_raise(rec, exc, policy)
                    continue
                yield self._counted(sample)
        finally:
            # Early stop (break / error): drop queued decodes, finish the few running ones.
            pool.shutdown(wait=True, cancel_futures=True)

    def _counted(self, sample: Sample) -> Sample:
        # in the consuming thread: the decode threads never touch shared state
        label = sample.meta.get("bit_depth")
        if label:
            self.bit_depths[label] = self.bit_depths.get(label, 0) + 1
        return sample

    def _report_or_raise(self, record: Record, exc: DataError, policy: str) -> None:
        if policy == "error":
            raise exc
        reason = str(exc)
        if policy == "collect":
            self.unreadable.append((record.image_id, reason))
            return
        self.skipped.append((record.image_id, reason))
        warnings.warn(
            f"{self.name}: skipped {record.image_id}: {reason}", BadImageWarning, stacklevel=3
        )

    def manifest_hash(self) -> str:
        """sha256 over the sorted records: ids, file content hints, labels and masks.

        Content hints (size + first/last 64 KiB) make it stable across copies and machines
        (no mtimes, paths relative to the root) yet change when a file or a label changes.
        """
        if self._hash is None:
            h = hashlib.sha256()
            header = {
                "name": self.name,
                "task": self.task,
                "structures": list(self.structures),
                "labels": list(self.labels),
                **self.hash_extra(),
            }
            if self.bit_depth is not None:  # only when set: other hashes stay as they were
                header["bit_depth"] = self.bit_depth
            h.update(repr(sorted(header.items())).encode())
            for rec in sorted(self.records, key=lambda r: r.image_id):
                h.update(b"\0")
                h.update(self.record_fingerprint(rec).encode())
            self._hash = h.hexdigest()
        return self._hash

    def hash_extra(self) -> dict[str, Any]:
        """Extra dataset-level facts to hash (e.g. a generator's parameters)."""
        return {}

    def record_fingerprint(self, rec: Record) -> str:
        parts = [rec.image_id, rec.patient_id, self._rel(rec.path), content_hint(rec.path)]
        if rec.labels is not None:
            parts.append(repr(sorted(rec.labels.items())))
        for s in sorted(rec.mask_paths or {}):
            for p in (rec.mask_paths or {})[s]:
                parts.append(f"{s}={self._rel(p)}:{content_hint(p)}")
        if rec.pixel_spacing_mm is not None:
            parts.append(f"{rec.pixel_spacing_mm:.6g}")
        if rec.bit_depth is not None:
            parts.append(f"bits={rec.bit_depth}")
        return "|".join(parts)

    def _rel(self, path: Path) -> str:
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name

    def describe(self) -> dict[str, Any]:
        """What was opened: counts found/kept, filters applied, label positives, skips."""
        out: dict[str, Any] = {
            "name": self.name,
            "root": str(self.root) if self.root is not None else None,
            "task": self.task,
            "images": len(self),
            "structures": list(self.structures) if self.task == "segmentation" else [],
            "labels": list(self.labels),
            "counts": dict(self.counts),
            "filters": [dict(f) for f in self.filters],
            "skipped": len(self.skipped),
        }
        if self.unreadable:
            out["unreadable"] = len(self.unreadable)
        if self.max_pixels != DEFAULT_MAX_PIXELS:
            out["max_pixels"] = self.max_pixels
        if self.bit_depth is not None:
            out["bit_depth"] = self.bit_depth
        if self.labels:
            pos = dict.fromkeys(self.labels, 0)
            for r in self.records:
                for k, v in (r.labels or {}).items():
                    if k in pos:
                        pos[k] += int(v)
            out["positives"] = pos
        if self.pairwise is not None:
            out["pairwise"] = str(self.pairwise)
        return out


def _as_names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = tuple(dict.fromkeys(str(v) for v in value))
    if not names:
        raise ConfigError("an empty list of names was given; omit the option to keep all")
    return names
