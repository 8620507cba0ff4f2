"""The replication document is generated from saved runs: its numbers are the runs' numbers."""

from __future__ import annotations

from pathlib import Path

from report_factory import make_result

from robusttest.zoo import replication as R


def test_doc_tables_carry_the_run_numbers(tmp_path: Path) -> None:
    run = make_result()
    results = {"unet": run}
    curves = R.plot_curves(results, tmp_path / "img" / "curves.png")
    assert curves.stat().st_size > 1000
    zoo = {
        "unet": {
            "config": {"task": "segmentation", "epochs": 6},
            "datasets": ["montgomery", "shenzhen"],
            "train_images": 358,
            "test": {"n": 80, "dice/lungs": {"mean": 0.95, "ci_low": 0.94, "ci_high": 0.96}},
        }
    }
    doc = R.write_doc(results, zoo, tmp_path / "replication.md", curves, native=results)
    text = doc.read_text()
    assert (
        "| unet | segmentation | montgomery, shenzhen | 358 | 6 | dice/lungs 0.950 [0.940, 0.960] |"
        in text
    )
    dice = [c for c in run.cases if c.metric == "dice" and c.noise]
    for c in dice:
        row = f"| {c.condition} | {c.severity or ''} | {c.clean:.3f} | {c.noisy:.3f} "
        assert row in text, row
    assert "## Side by side with the paper" in text
    assert "](img/curves.png)" in text
