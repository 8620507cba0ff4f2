"""Montgomery + Shenzhen as one dataset: the two NLM tuberculosis sets (Jaeger et al. 2014).

The root is the folder holding ``montgomery/`` and ``shenzhen/`` (the corpus root). Each
image keeps its own set's held-out split (a hash of its patient id within its set), so
``split: test`` is exactly the union of the two sets' test splits, the images the zoo
holds out when it trains on both. Patient ids are prefixed with the set's name: the two
sets number their patients independently, and the bootstrap must not merge Montgomery's
patient 0001 with Shenzhen's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from robusttest.data._tb import TBDataset
from robusttest.data.base import Dataset, PairwiseTask, Record, resolve_root
from robusttest.data.montgomery import Montgomery
from robusttest.data.registry import register_adapter
from robusttest.data.shenzhen import Shenzhen

_PARTS: tuple[type[TBDataset], ...] = (Montgomery, Shenzhen)


@register_adapter("montgomery-shenzhen")
class MontgomeryShenzhen(Dataset):
    tasks = ("segmentation", "classification")
    structures: tuple[str, ...] = ("lungs",)
    labels: tuple[str, ...] = ("Tuberculosis",)

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
            root,
            self.name,
            ".",
            lambda p: all((p / part.name / "CXR_png").is_dir() for part in _PARTS),
            "montgomery/CXR_png/ and shenzhen/CXR_png/",
        )
        # each part whole (its own filters come after, on the combined records)
        self._parts = [part(found / part.name, task=task) for part in _PARTS]
        super().__init__(
            found,
            task=task,
            limit=limit,
            labels=labels,
            pairwise=pairwise,
            structures=structures,
            split=split,
        )

    def scan(self) -> Iterable[Record]:
        out: list[Record] = []
        for part in self._parts:
            for key, value in part.counts.items():
                self.counts[f"{part.name}_{key}"] = value
            out += [
                dataclasses.replace(r, patient_id=f"{part.name}:{r.patient_id}")
                for r in part.records
            ]
        self.counts["found"] = len(out)
        return out

    def split_ids(self, split: str) -> set[str] | None:
        ids: set[str] = set()
        for part in self._parts:
            ids |= part.split_ids(split) or set()
        return ids
