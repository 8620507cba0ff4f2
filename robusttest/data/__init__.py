"""Dataset adapters: one ``open_dataset(name, root, **options)`` for every source.

Built-in adapters: nih-cxr14, montgomery, shenzhen, montgomery-shenzhen (both as one), jsrt, landmark, manifest, dicom,
phantom. Add your own with ``@register_adapter("name")`` on a ``Dataset`` subclass.
"""

from __future__ import annotations

from robusttest.data.base import (
    BadImageWarning,
    Dataset,
    PairwiseTask,
    Record,
    Sample,
    content_hint,
    read_mask,
)
from robusttest.data.registry import (
    ADAPTERS,
    accepted_options,
    available_adapters,
    open_dataset,
    register_adapter,
)

# Importing the built-in adapters registers them (none imports anything heavy).
from robusttest.data import (  # noqa: F401  isort: skip
    dicom,
    jsrt,
    landmark,
    manifest,
    montgomery,
    montgomery_shenzhen,
    nih,
    phantom,
    shenzhen,
)
from robusttest.data.landmark import rasterise_polygon  # isort: skip
from robusttest.data.nih import NIH_LABELS  # isort: skip

__all__ = [
    "ADAPTERS",
    "NIH_LABELS",
    "BadImageWarning",
    "Dataset",
    "PairwiseTask",
    "Record",
    "Sample",
    "accepted_options",
    "available_adapters",
    "content_hint",
    "open_dataset",
    "rasterise_polygon",
    "read_mask",
    "register_adapter",
]
