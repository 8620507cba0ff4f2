"""Metrics: the math (``functional``) and the registry of named metrics (``registry``).

``from robusttest import metrics as M`` gives both: ``M.dice(pred, target)`` and
``M.get_metric("dice").higher_is_better``.
"""

from __future__ import annotations

from robusttest.metrics.functional import (
    MacroAUROC,
    MetricValue,
    PairwiseTask,
    auroc,
    auroc_per_label,
    binarize,
    dice,
    dice_from_counts,
    hausdorff,
    hausdorff_with_reasons,
    hd95,
    iou,
    iou_from_counts,
    macro_auroc,
    one_class_reason,
    pairwise_task,
)
from robusttest.metrics.registry import (
    METRICS,
    TASKS,
    ClassificationMetric,
    Metric,
    SegmentationBatch,
    SegmentationMetric,
    Task,
    available_metrics,
    classification_metric,
    default_metrics,
    get_metric,
    register_metric,
    segmentation_metric,
)

__all__ = [
    "METRICS",
    "TASKS",
    "ClassificationMetric",
    "MacroAUROC",
    "Metric",
    "MetricValue",
    "PairwiseTask",
    "SegmentationBatch",
    "SegmentationMetric",
    "Task",
    "auroc",
    "auroc_per_label",
    "available_metrics",
    "binarize",
    "classification_metric",
    "default_metrics",
    "dice",
    "dice_from_counts",
    "get_metric",
    "hausdorff",
    "hausdorff_with_reasons",
    "hd95",
    "iou",
    "iou_from_counts",
    "macro_auroc",
    "one_class_reason",
    "pairwise_task",
    "register_metric",
    "segmentation_metric",
]
