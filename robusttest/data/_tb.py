"""Shared parts of the NLM tuberculosis sets (Montgomery, Shenzhen): ``CXR_png/`` + lung masks.

File names end in ``_0`` (normal) or ``_1`` (tuberculosis); that label is exposed as
``{"Tuberculosis": 0/1}`` so the same folder serves a TB-vs-normal classification task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from robusttest.data.base import Dataset, PairwiseTask, Record, heldout_patient, resolve_root
from robusttest.errors import DataError


class TBDataset(Dataset):
    tasks = ("segmentation", "classification")
    structures: tuple[str, ...] = ("lungs",)
    labels: tuple[str, ...] = ("Tuberculosis",)
    prefix: str = ""  # MCUCXR / CHNCXR
    source: str = ""

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
        found = resolve_root(
            root, self.name, self.name, lambda p: (p / "CXR_png").is_dir(), "CXR_png/"
        )
        super().__init__(
            found,
            task=task,
            limit=limit,
            labels=labels,
            pairwise=pairwise,
            structures=structures,
            split=split,
        )

    def split_ids(self, split: str) -> set[str] | None:
        """No official split: a fixed 20% held out by a hash of the patient id."""
        return {
            image_id
            for image_id, patient_id in self._patient_of.items()
            if heldout_patient(patient_id, self.name) == (split == "test")
        }

    def mask_files(self, stem: str) -> tuple[Path, ...] | None:
        """The mask files of one image (ORed together), or None when it has none."""
        raise NotImplementedError

    def spacing(self, path: Path) -> float | None:
        return None

    def scan(self) -> Iterable[Record]:
        assert self.root is not None
        pattern = re.compile(rf"^{self.prefix}_(\d+)_([01])\.png$", re.IGNORECASE)
        records: list[Record] = []
        ignored = 0
        for path in sorted((self.root / "CXR_png").iterdir()):
            m = pattern.match(path.name)
            if m is None or not path.is_file():
                ignored += 1
                continue
            masks = self.mask_files(path.stem)
            records.append(
                Record(
                    image_id=path.stem,
                    patient_id=m.group(1),
                    path=path,
                    labels={"Tuberculosis": int(m.group(2))},
                    mask_paths={"lungs": masks} if masks else None,
                    pixel_spacing_mm=self.spacing(path),
                    meta={"source": self.source},
                )
            )
        self._patient_of = {r.image_id: r.patient_id for r in records}
        self.counts.update(
            images=len(records),
            with_masks=sum(r.mask_paths is not None for r in records),
            tuberculosis=sum(int(r.labels["Tuberculosis"]) for r in records if r.labels),
            other_files_ignored=ignored,
        )
        if not records:
            raise DataError(
                f"{self.name}: no {self.prefix}_####_{{0,1}}.png files in {self.root / 'CXR_png'}"
            )
        return records
