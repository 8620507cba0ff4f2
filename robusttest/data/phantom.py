"""The embedded procedural dataset: robusttest.phantom cases, generated on demand.

Nothing is read from disk: a record is (seed, index) and ``load`` generates the case, so
any command runs offline. Image ids are ``phantom-<seed>-<index>`` whatever the task, so
the same case has the same id for segmentation and classification. For
task="classification" the labels (the findings) are drawn at open with
``robusttest.phantom.case_labels``, without rendering, so that label filters, pairwise
tasks and describe() work; each image is rendered once, in load().
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from robusttest.data.base import Dataset, PairwiseTask, Record, Sample
from robusttest.data.registry import register_adapter
from robusttest.errors import ConfigError, DataError, check_range

PHANTOM_PATH = Path("phantom")  # records have no file


def _phantom() -> ModuleType:
    # Imported lazily: the generator is heavy and importing robusttest.data stays light.
    return importlib.import_module("robusttest.phantom")


@register_adapter("phantom")
class Phantom(Dataset):
    tasks = ("segmentation", "classification")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        n: int = 64,
        seed: int = 0,
        size: int = 256,
        finding_prob: float = 0.3,
        findings: Sequence[str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | str | None = None,
        pairwise: PairwiseTask | str | Sequence[str] | None = None,
        structures: Sequence[str] | str | None = None,
        split: str = "all",
    ) -> None:
        for name, value, low in (("n", n, 1), ("size", size, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"phantom: {name}={value!r}; give an integer >= {low}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"phantom: seed={seed!r}; give an integer >= 0")
        self.n, self.seed, self.size = n, seed, size
        self.finding_prob = check_range("phantom: finding_prob", finding_prob, 0.0, 1.0)
        self.findings = tuple(findings) if findings is not None else None
        mod = _phantom()
        known = tuple(getattr(mod, "FINDINGS", ()))
        if self.findings is not None:
            for f in self.findings:
                if known and f not in known:
                    from robusttest.errors import UnknownNameError

                    raise UnknownNameError("phantom finding", f, known)
        self.structures = tuple(getattr(mod, "STRUCTURES", ("lungs",)))
        self.labels = self.findings if self.findings is not None else known
        field = getattr(mod, "FIELD_MM", None)
        self._spacing = float(field) / size if isinstance(field, (int, float)) else None
        super().__init__(
            root,
            task=task,
            limit=limit,
            labels=labels,
            pairwise=pairwise,
            structures=structures,
            split=split,
        )

    def _generate(self, index: int) -> Any:
        return _phantom().generate_case(
            self.seed, index, size=self.size, finding_prob=self.finding_prob, findings=self.findings
        )

    def scan(self) -> Iterable[Record]:
        records: list[Record] = []
        for i in range(self.n):
            rid = f"phantom-{self.seed}-{i:05d}"
            pid = f"phantom-{self.seed}-p{i:05d}"
            labels: dict[str, int] | None = None
            if self.task == "classification":  # drawn without rendering the image
                labels = _phantom().case_labels(
                    self.seed, i, finding_prob=self.finding_prob, findings=self.findings
                )
            meta = {"source": "phantom", "seed": str(self.seed), "index": str(i)}
            spacing = self._spacing
            mask_paths = {s: (PHANTOM_PATH,) for s in self.structures}
            records.append(
                Record(
                    image_id=rid,
                    patient_id=pid,
                    path=PHANTOM_PATH,
                    labels=labels,
                    mask_paths=mask_paths,
                    pixel_spacing_mm=spacing,
                    meta=meta,
                )
            )
        self.counts.update(generated=self.n, seed=self.seed, size=self.size)
        return records

    def load(self, record: Record) -> Sample:
        index = int(record.meta["index"])
        try:
            case = self._generate(index)
        except Exception as exc:
            raise DataError(
                f"phantom: generating case {index} (seed {self.seed}) failed: {exc}"
            ) from exc
        masks = None
        if self.task == "segmentation":
            masks = {s: case.masks[s] for s in self.structures if s in case.masks}
        labels = {k: int(v) for k, v in case.labels.items() if k in self.labels}
        meta = {**record.meta, "bit_depth": "float"}
        if str(case.image_id) != record.image_id:  # the generator's own naming, if it differs
            meta["phantom_image_id"] = str(case.image_id)
        return Sample(
            image_id=record.image_id,
            patient_id=record.patient_id,
            image=case.image,
            masks=masks,
            labels=labels,
            pixel_spacing_mm=float(case.pixel_spacing_mm),
            meta=meta,
        )

    def hash_extra(self) -> dict[str, Any]:
        # The generator's source is part of the data: a change to it changes every image.
        try:
            src = inspect.getsource(_phantom())
        except (OSError, TypeError):
            src = ""
        return {
            "seed": self.seed,
            "n": self.n,
            "size": self.size,
            "finding_prob": self.finding_prob,
            "findings": self.findings,
            "generator": hashlib.sha256(src.encode()).hexdigest()[:32],
        }

    def record_fingerprint(self, rec: Record) -> str:
        return "|".join([rec.image_id, repr(sorted((rec.labels or {}).items()))])
