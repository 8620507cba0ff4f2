"""The run settings: one option table, parsed from command line and ini values, validated,
frozen (robusttest.options, used by the pytest plugin and `robusttest run`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pytest_robusttest.options import settings_from_config

from robusttest.options import OPTIONS, RunSettings, SettingsError, parse_device


def settings(
    cli: dict[str, object] | None = None, ini: dict[str, object] | None = None, **kw: object
) -> RunSettings:
    kw.setdefault("invocation_dir", Path("/work/here"))
    return RunSettings.from_sources(cli or {}, ini or {}, **kw)  # type: ignore[arg-type]


def test_defaults_are_inactive_and_documented() -> None:
    s = settings()
    assert not s.active
    assert (s.device, s.cache, s.batch_size, s.workers) == ("auto", True, 16, 2)
    assert s.lanes is None  # the engine's default
    assert settings({"lanes": "3"}).lanes == 3 and settings(ini={"lanes": "2"}).lanes == 2
    assert s.baseline_tolerance == () and s.baseline_tolerances() == (None, {})
    assert not s.baseline_fail_on_ungated
    assert (s.seed, s.repeats, s.limit, s.json, s.html, s.baseline, s.data) == (None,) * 7
    assert s.suites == () and s.suite_files == ()


def test_every_option_maps_to_a_settings_field_and_an_ini_key() -> None:
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    for o in OPTIONS:
        assert o.field in fields or o.field == "no_cache"
        assert o.flag.startswith("--robust-")  # every option has a --robust- spelling
        name = o.ini.removeprefix("robusttest_")
        assert name != o.ini and name in o.flag.replace("-", "_")
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)
    shorts = [o.short for o in OPTIONS if o.short]
    assert shorts == ["--model", "--suite", "--data", "--device"]


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings().device = "cpu"  # type: ignore[misc]


def test_command_line_wins_over_ini() -> None:
    s = settings(
        {"seed": 5, "device": "cpu", "models": ["a.onnx"]},
        {"seed": "3", "device": "cuda", "repeats": "4", "models": [Path("/ini/b.onnx")]},
    )
    assert (s.seed, s.device, s.repeats) == (5, "cpu", 4)
    assert s.models == (Path("/work/here/a.onnx"),)
    assert s.sources["seed"] == "cli" and s.sources["repeats"] == "ini"


def test_paths_resolve_against_their_source() -> None:
    s = settings(
        {"json": "out/r.json"},
        {"html": "reports/r.html", "models": ["m.onnx"], "data": "~/data"},
        ini_dir=Path("/proj"),
    )
    assert s.json == Path("/work/here/out/r.json")  # command line: the invocation dir
    assert s.html == Path("/proj/reports/r.html")  # ini: the ini file's dir
    assert s.models == (Path("/proj/m.onnx"),)
    assert s.data == Path("~/data").expanduser()


def test_suite_names_stay_names_and_paths_become_absolute() -> None:
    s = settings({"suites": ["lungs", "my/suite.yaml", "other.yml"]})
    assert s.suites == ("lungs", "/work/here/my/suite.yaml", "/work/here/other.yml")
    s = settings(ini={"suites": ["findings", "s.yaml"]}, ini_dir=Path("/proj"))
    assert s.suites == ("findings", "/proj/s.yaml")


@pytest.mark.parametrize(
    ("text", "device"),
    [("auto", "auto"), ("cpu", "cpu"), ("CUDA", "cuda"), ("cuda:1", "cuda:1"), (" cpu ", "cpu")],
)
def test_device_syntax(text: str, device: str) -> None:
    assert parse_device(text) == device


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda:-1", "", "mps"])
def test_bad_device_names_the_choices(text: str) -> None:
    with pytest.raises(SettingsError, match="use auto, cpu, cuda or cuda:N"):
        parse_device(text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("repeats", 0, r"--robust-repeats: 0 is not >= 1"),
        ("limit", "0", r"--robust-limit: 0 is not >= 1"),
        ("batch_size", "-1", r"--robust-batch-size: -1 is not >= 1"),
        ("workers", "-1", r"--robust-workers: -1 is not >= 0"),
        ("lanes", "0", r"--robust-lanes: 0 is not >= 1"),
        ("seed", "x", r"--robust-seed: 'x' is not an integer"),
        ("baseline_tolerance", "-0.1", r"--robust-baseline-tolerance: '-0.1': must be a finite"),
        ("baseline_tolerance", ["hd95="], r"--robust-baseline-tolerance: 'hd95=': expected METRIC"),
        ("device", "tpu", r"--robust-device: 'tpu' is not a device"),
        ("reports", ["csv=x.csv"], r"--robust-report: 'csv=x.csv': unknown report format 'csv'"),
        ("reports", ["x.csv"], r"--robust-report: 'x.csv' is not FORMAT=PATH"),
    ],
)
def test_invalid_values_name_the_option(field: str, value: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings({field: value})


def test_invalid_ini_values_name_the_ini_key() -> None:
    with pytest.raises(SettingsError, match=r"robusttest_repeats \(ini\): 0 is not >= 1"):
        settings(ini={"repeats": "0"})
    with pytest.raises(
        SettingsError, match=r"robusttest_no_cache \(ini\): 'maybe' is not a boolean"
    ):
        settings(ini={"no_cache": "maybe"})


def test_no_cache_switch_and_ini() -> None:
    assert settings({"no_cache": True}).cache is False
    assert settings(ini={"no_cache": "true"}).cache is False
    assert settings({"no_cache": None}, {"no_cache": None}).cache is True


def test_yaml_test_paths_become_suite_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("task: segmentation\n")
    (tmp_path / "b.yml").write_text("task: segmentation\n")
    s = settings(
        args=["a.yaml::x", "b.yml", "missing.yaml", "tests", "a.yaml"], invocation_dir=tmp_path
    )
    assert s.suite_files == (tmp_path / "a.yaml", tmp_path / "b.yml")


def test_from_config_reads_cli_and_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nrobusttest_seed = 3\nrobusttest_repeats = 2\nrobusttest_model = m.onnx\n"
    )
    config = pytester.parseconfig("--robust-seed=7", "--device=CPU")
    s = settings_from_config(config)
    assert (s.seed, s.repeats, s.device) == (7, 2, "cpu")
    assert s.models == (pytester.path / "m.onnx",)


def test_argparse_rejects_bad_values_with_the_message(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match=r"--robust-repeats: 0 is not >= 1"):
        pytester.parseconfig("--robust-repeats=0")
    with pytest.raises(pytest.UsageError, match=r"--device/--robust-device: 'gpu' is not a device"):
        pytester.parseconfig("--device", "gpu")


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"json": "r.json", "html": "r.json"}, r"--robust-html .*r.json: the same file as --robust-json"),
        ({"json": "a/../r.json", "reports": ["json=r.json"]}, r"the same file as --robust-json"),
        ({"html": "b.json", "baseline": "b.json"}, r"--robust-baseline .*: the same file as --robust-html"),
    ],
)  # fmt: skip
def test_colliding_outputs_are_a_usage_error(cli: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(cli)


def test_junitxml_colliding_with_a_report(pytester: pytest.Pytester) -> None:
    with pytest.raises(SettingsError, match=r"--junitxml .*out.xml: the same file as"):
        config = pytester.parseconfig("--robust-model=m.onnx", "--robust-html=out.xml",
                                      "--junitxml=out.xml")  # fmt: skip
        settings_from_config(config)
