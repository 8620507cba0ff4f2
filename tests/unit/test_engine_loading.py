"""Loading: the card picks the suite, the suite's model: section completes the card, and
the model file is loaded (hashed, probed) once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robusttest.engine import loading
from robusttest.errors import ModelError
from robusttest.models import stored_card_fields

REPO = Path(__file__).resolve().parents[2]
LUNGS = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = loading.load_model

    def counting(path: Any, **kw: Any) -> Any:
        calls.append(kw)
        return real(path, **kw)

    monkeypatch.setattr(loading, "load_model", counting)
    return calls


def test_a_model_section_loads_the_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "task: segmentation\nmodel: {structures: [lungs], mean: [0.4]}\n"
        "noise: {gaussian: {sigma: [0.1]}}\ndata: {limit: 2}\n"
    )
    calls = _count_loads(monkeypatch)
    runner, s = loading.load_model_and_suite(LUNGS, suite)
    assert len(calls) == 1 and calls[0]["card_overrides"] == {
        "structures": ["lungs"],
        "mean": [0.4],
    }
    assert runner.card.mean == (0.4,) and s.task == "segmentation"


def test_the_card_picks_the_default_suite_with_one_load(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_loads(monkeypatch)
    runner, s = loading.load_model_and_suite(LUNGS, None)
    assert len(calls) == 1 and calls[0]["card_overrides"] is None
    assert s.name == "lungs" and runner.card.task == "segmentation"


def test_stored_card_fields_read_without_loading() -> None:
    fields = stored_card_fields(LUNGS)
    assert fields["task"] == "segmentation" and fields["structures"] == ["lungs"]


def test_no_card_and_no_suite_is_the_card_error(tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(LUNGS))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    assert stored_card_fields(bare) == {}
    with pytest.raises(ModelError, match="has no robusttest model card"):
        loading.load_model_and_suite(bare, None)
