"""Under pytest, an uninformative case is skipped with its reason, or fails when the suite
says ``gates.uninformative: fail`` (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import Models, junit_cases

# A classification suite on 12 phantom images with one noise level: the model below
# ignores the image, so each of its 2 targets has AUROC 0.5 clean and noisy.
SUITE = """\
name: chance
task: classification
data: {{adapter: phantom, options: {{n: 12, size: 64, seed: 0, task: classification, finding_prob: 0.5}}}}
noise:
  gaussian: {{sigma: [0.1]}}
repeats: 1
metrics: [auroc]
targets: [effusion, cardiomegaly]
bootstrap: {{resamples: 100}}
gates:
  default: {{max_drop: 0.1}}
  floor: {{auroc: 0.7}}
  uninformative: {policy}
"""


@pytest.fixture(scope="module")
def ignorant(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from torch import nn

    from robusttest.models import ModelCard, export_onnx
    from robusttest.phantom import FINDINGS

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], len(FINDINGS)) + 0.0 * x.mean()

    card = ModelCard(
        task="classification",
        input_size=(64, 64),
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        labels=tuple(FINDINGS),
        output_activation="sigmoid",
    )
    return export_onnx(Constant(), tmp_path_factory.mktemp("m") / "constant.onnx", card)


def test_uninformative_cases_are_skipped_with_the_reason(
    project: pytest.Pytester, ignorant: Path
) -> None:
    project.makefile(".yaml", chance=SUITE.format(policy="report"))
    result = project.runpytest(
        f"--model={ignorant}", "--suite=chance.yaml", "-rs", "--junitxml=j.xml"
    )
    result.assert_outcomes(skipped=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*PASSED: 4 cases: 0 passed, 0 failed, 0 reported without a gate, 4 uninformative*",
            "SKIPPED * uninformative: clean auroc effusion 0.5 [[]95% CI 0.5, 0.5]: its CI "
            "contains chance (0.5) and below the suite's floor 0.7; not judged*",
        ]
    )
    cases = junit_cases(project.path / "j.xml")
    assert len(cases) == 4 and {p["verdict"] for p in cases.values()} == {"uninformative"}


def test_the_suite_that_asks_fails_them(project: pytest.Pytester, ignorant: Path) -> None:
    project.makefile(".yaml", chance=SUITE.format(policy="fail"))
    result = project.runpytest(f"--model={ignorant}", "--suite=chance.yaml", "-ra")
    result.assert_outcomes(failed=4)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*FAILED: 4 cases: 0 passed, 4 failed (4 of them uninformative)*",
            "FAILED *effusion-auroc[[]clean]* - uninformative: clean auroc effusion 0.5*",
        ]
    )
