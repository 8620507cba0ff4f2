"""robusttest.models: card, exporters, runners, safety checks."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from robusttest.errors import ConfigError, InputError, ModelError
from robusttest.models import (
    CARD_FILENAME,
    ModelCard,
    ModelRunner,
    OnnxRunner,
    TorchRunner,
    check_outputs,
    detect_format,
    export_onnx,
    file_sha256,
    load_model,
    save_pt2,
    save_torchscript,
)
from robusttest.zoo.nets import TinyCNN, TinyUNet

SEG_CARD = ModelCard(
    task="segmentation",
    input_size=(32, 40),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    structures=("lungs",),
    output_activation="sigmoid",
    name="tiny-unet",
    version="0.1",
    training_data="phantom",
    extra={"note": "test"},
)
CLS_CARD = ModelCard(
    task="classification",
    input_size=(32, 32),
    channels=3,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    labels=("Effusion", "Pneumothorax"),
    output_activation="sigmoid",
    name="tiny-cnn",
)


@pytest.fixture(autouse=True, scope="module")
def _few_threads() -> Iterator[None]:
    # Two CPU cores shared with other test runs: keep torch to one thread here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return TinyUNet(in_channels=1, out_channels=1, base=4, depth=3).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return TinyCNN(in_channels=3, num_classes=2, base=8).eval()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def unet_onnx(models_dir: Path) -> Path:
    return export_onnx(_unet(), models_dir / "unet.onnx", SEG_CARD)


@pytest.fixture(scope="module")
def cnn_onnx(models_dir: Path) -> Path:
    return export_onnx(_cnn(), models_dir / "cnn.onnx", CLS_CARD)


def _load(path: Path, **kw: object) -> ModelRunner:
    return load_model(path, device="cpu", threads=1, **kw)  # type: ignore[arg-type]


# -- card ---------------------------------------------------------------------------------


def test_card_round_trips_through_dict_json_and_metadata() -> None:
    for card in (SEG_CARD, CLS_CARD):
        assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
        meta = card.to_metadata()
        assert all(k.startswith("robusttest.") for k in meta)
        assert json.loads(meta["robusttest.input_size"]) == list(card.input_size)
        assert ModelCard.from_metadata(meta) == card
    assert hash(SEG_CARD) == hash(ModelCard.from_dict(SEG_CARD.to_dict()))
    assert pickle.loads(pickle.dumps(SEG_CARD)) == SEG_CARD


def test_card_normalises_yaml_style_values() -> None:
    card = ModelCard(
        task="classification",
        input_size=224,  # type: ignore[arg-type]
        channels=3,
        mean=0.5,  # type: ignore[arg-type]
        std=[0.25],  # type: ignore[arg-type]
        labels="Effusion",  # type: ignore[arg-type]
        output_activation="sigmoid",
        extra={"threshold": 0.5},  # type: ignore[dict-item]
    )
    assert card.input_size == (224, 224)
    assert card.mean == (0.5, 0.5, 0.5) and card.std == (0.25, 0.25, 0.25)
    assert card.labels == ("Effusion",)
    assert dict(card.extra) == {"threshold": "0.5"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": "detection"}, "task"),
        ({"channels": 2}, "channels"),
        ({"channels": True}, "channels"),
        ({"input_size": (0, 32)}, "input_size"),
        ({"input_size": (32, 32, 3)}, "input_size"),
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": (0.0,)}, "std"),
        ({"std": (float("nan"),)}, "std"),
        ({"output_activation": "relu"}, "output_activation"),
        ({"structures": ()}, "structures"),
        ({"structures": ("lungs", "lungs")}, "structures"),
        ({"extra": {"a": [1]}}, "extra"),
    ],
)
def test_card_rejects_bad_values_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SEG_CARD.with_overrides(**change)


def test_card_classification_needs_labels_and_unknown_fields_are_named() -> None:
    with pytest.raises(ConfigError, match="labels"):
        CLS_CARD.with_overrides(labels=())
    with pytest.raises(ConfigError, match="colour"):
        CLS_CARD.with_overrides(colour="red")
    with pytest.raises(ConfigError, match="colour"):
        ModelCard.from_dict({**CLS_CARD.to_dict(), "colour": "red"})
    assert CLS_CARD.with_overrides(input_size=[64, 48]).input_size == (64, 48)


def test_card_from_partial_metadata_names_missing_fields_and_the_fix() -> None:
    meta = {"robusttest.task": '"segmentation"', "other": "x"}
    with pytest.raises(ModelError) as info:
        ModelCard.from_metadata(meta, source="m.onnx")
    msg = str(info.value)
    for name in ("m.onnx", "input_size", "channels", "mean", "std", "structures", "model:"):
        assert name in msg
    card = ModelCard.from_metadata(
        meta,
        source="m.onnx",
        overrides={
            "input_size": [8, 8],
            "channels": 1,
            "mean": 0,
            "std": 1,
            "structures": ["lungs"],
            "output_activation": "sigmoid",
        },
    )
    assert card.name == "m" and card.input_size == (8, 8)
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelCard.from_metadata({"robusttest.task": "segmentation"}, source="m.onnx")


# -- ONNX export and run ---------------------------------------------------------------------


def test_onnx_card_is_stored_in_metadata_and_read_back(unet_onnx: Path) -> None:
    proto = onnx.load(str(unet_onnx))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["robusttest.structures"]) == ["lungs"]
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    runner = _load(unet_onnx)
    assert isinstance(runner, OnnxRunner) and isinstance(runner, ModelRunner)
    assert runner.card == SEG_CARD
    assert runner.device == "cpu" and "CPUExecutionProvider" in runner.backend
    assert runner.sha256 == hashlib.sha256(unet_onnx.read_bytes()).hexdigest()
    assert not list(unet_onnx.parent.glob(".*.tmp"))  # atomic write left nothing behind


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_torch_with_dynamic_batch(unet_onnx: Path, cnn_onnx: Path, batch: int) -> None:
    gen = torch.Generator().manual_seed(batch)
    for make, path, card in ((_unet, unet_onnx, SEG_CARD), (_cnn, cnn_onnx, CLS_CARD)):
        x = torch.randn(batch, card.channels, *card.input_size, generator=gen)
        with torch.no_grad():
            want = make()(x)
        got = _load(path, probe=False)(x)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_export_checks_outputs_against_the_card(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model returns 2 outputs but the card lists 3 labels"):
        export_onnx(_cnn(), tmp_path / "m.onnx", CLS_CARD.with_overrides(labels=("a", "b", "c")))
    with pytest.raises(ModelError, match="channels=1"):
        export_onnx(
            _cnn(), tmp_path / "m.onnx", CLS_CARD.with_overrides(channels=1, mean=0.5, std=0.25)
        )
    assert not list(tmp_path.iterdir())


def test_export_restores_training_mode(tmp_path: Path) -> None:
    net = _cnn().train()
    export_onnx(net, tmp_path / "m.onnx", CLS_CARD)
    assert net.training


def test_fixed_batch_onnx_is_run_in_chunks(tmp_path: Path) -> None:
    net = _cnn()
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"]
        )
    proto = onnx.load(str(path))
    for k, v in CLS_CARD.to_metadata().items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))
    runner = _load(path)
    assert isinstance(runner, OnnxRunner) and runner.fixed_batch == 1
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(runner(x), net(x), atol=1e-4, rtol=1e-4)


def test_onnx_without_card_needs_overrides(tmp_path: Path) -> None:
    path = tmp_path / "bare.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _cnn(),
            (torch.rand(2, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "n"}},
        )
    with pytest.raises(ModelError) as info:
        _load(path)
    msg = str(info.value)
    assert "bare.onnx" in msg and "no robusttest model card" in msg
    for name in ("task", "input_size", "channels", "output_activation", "model:"):
        assert name in msg
    runner = _load(path, card_overrides=CLS_CARD.to_dict())
    assert runner.card == CLS_CARD
    # a label count that does not fit the model fails at load time, naming the file
    with pytest.raises(ModelError, match=r"bare\.onnx.*returns 2 outputs but the card lists 1"):
        _load(path, card_overrides={**CLS_CARD.to_dict(), "labels": ["Effusion"]})


def test_wrong_channels_or_size_refused_naming_the_file(unet_onnx: Path) -> None:
    with pytest.raises(ModelError, match=r"unet\.onnx.*1 channel\(s\).*channels: 3"):
        _load(unet_onnx, card_overrides={"channels": 3, "mean": 0.5, "std": 0.25})
    with pytest.raises(ModelError, match=r"unet\.onnx.*height 32.*input_size"):
        _load(unet_onnx, card_overrides={"input_size": [64, 40]})


def test_runner_rejects_a_batch_that_does_not_fit(unet_onnx: Path) -> None:
    runner = _load(unet_onnx, probe=False)
    with pytest.raises(InputError, match="preprocess"):
        runner(torch.zeros(2, 1, 16, 16))


def test_cuda_without_gpu_is_an_error(unet_onnx: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="--device cpu"):
        load_model(unet_onnx, device="cuda")
    with pytest.raises(ConfigError, match="cuda:N"):
        load_model(unet_onnx, device="tpu")
    assert load_model(unet_onnx, device="auto", threads=1).device == "cpu"


# -- external data ---------------------------------------------------------------------------


def _save_external(src: Path, dst: Path) -> onnx.ModelProto:
    proto = onnx.load(str(src))
    onnx.save_model(
        proto, str(dst), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    return onnx.load(str(dst), load_external_data=False)


def _set_location(proto: onnx.ModelProto, location: str) -> None:
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location


def test_external_data_inside_the_folder_loads(unet_onnx: Path, tmp_path: Path) -> None:
    dst = tmp_path / "ext.onnx"
    _save_external(unet_onnx, dst)
    runner = _load(dst)
    x = torch.randn(2, 1, 32, 40)
    torch.testing.assert_close(runner(x), _load(unet_onnx)(x), atol=1e-5, rtol=1e-5)
    both = hashlib.sha256(dst.read_bytes() + (tmp_path / "weights.bin").read_bytes())
    assert runner.sha256 == both.hexdigest()


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/weights.bin", "sub/../../w.bin"])
def test_external_data_escaping_the_folder_is_refused(
    unet_onnx: Path, tmp_path: Path, location: str
) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    proto = _save_external(unet_onnx, inner / "ext.onnx")
    (inner / "weights.bin").rename(tmp_path / "weights.bin")
    _set_location(proto, location)
    bad = inner / "bad.onnx"
    onnx.save_model(proto, str(bad))
    with pytest.raises(ModelError, match=r"bad\.onnx.*external location.*refusing"):
        load_model(bad, device="cpu", threads=1)


# -- TorchScript and torch.export --------------------------------------------------------------


@pytest.mark.parametrize("method", ["script", "trace"])
def test_torchscript_round_trip(tmp_path: Path, method: str) -> None:
    net = _unet()
    path = save_torchscript(net, tmp_path / "unet.pt", SEG_CARD, method=method)  # type: ignore[arg-type]
    assert detect_format(path) == "torchscript"
    runner = _load(path)
    assert isinstance(runner, TorchRunner) and runner.card == SEG_CARD
    assert runner.sha256 == file_sha256(path)
    for n in (1, 5):
        x = torch.randn(n, 1, 32, 40)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), net(x), atol=1e-5, rtol=1e-5)


def test_pt2_round_trip(tmp_path: Path) -> None:
    net = _cnn()
    path = save_pt2(net, tmp_path / "cnn.pt2", CLS_CARD)
    assert detect_format(path) == "pt2"
    with zipfile.ZipFile(path) as zf:
        assert any(n.endswith("extra/" + CARD_FILENAME) for n in zf.namelist())
    runner = _load(path)
    assert isinstance(runner, TorchRunner) and runner.card == CLS_CARD
    assert "torch.export" in runner.backend
    for n in (1, 5):
        x = torch.randn(n, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), net(x), atol=1e-5, rtol=1e-5)
    runner(x).mul_(2)  # outputs are ordinary tensors, not inference-mode ones


def _with_saved_with(src: Path, dst: Path, version: str | None) -> Path:
    """A copy of an archive whose recorded torch version is ``version`` (None: no record)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("extra/robusttest_saved_with.json"):
                if version is None:
                    continue
                data = json.dumps({"torch": version}).encode()
            zout.writestr(info, data)
    return dst


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_archive_from_a_newer_torch_names_both_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    # Seen on a device with torch 2.11: a file scripted by 2.14 calls
    # aten::_upsample_lanczos2d_aa, which 2.11 lacks. The loader's failure is simulated here.
    if fmt == "torchscript":
        good = save_torchscript(_cnn(), tmp_path / "m.pt", CLS_CARD)
        target = "jit.load"
    else:
        good = save_pt2(_cnn(), tmp_path / "m.pt2", CLS_CARD)
        target = "export.load"
    with zipfile.ZipFile(good) as zf:
        name = next(n for n in zf.namelist() if n.endswith("extra/robusttest_saved_with.json"))
        assert json.loads(zf.read(name)) == {"torch": torch.__version__}

    def too_old(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unknown builtin op: aten::_upsample_lanczos2d_aa.")

    module, attr = target.split(".")
    monkeypatch.setattr(getattr(torch, module), attr, too_old)
    newer = _with_saved_with(good, tmp_path / f"newer{good.suffix}", "99.1.0")
    with pytest.raises(ModelError) as info:
        load_model(newer, device="cpu")
    msg = str(info.value)
    assert msg.startswith(f"{newer}: torch {torch.__version__} cannot load this {fmt} model")
    assert "_upsample_lanczos2d_aa" in msg
    assert "saved with torch 99.1.0: load it with that torch or a newer one" in msg
    assert "method='trace'" in msg and "ONNX" in msg

    unknown = _with_saved_with(good, tmp_path / f"unknown{good.suffix}", None)
    with pytest.raises(ModelError, match="calls an operator this torch does not have: a newer"):
        load_model(unknown, device="cpu")
    with pytest.raises(ModelError) as same:  # same version: the hint would mislead
        load_model(good, device="cpu")
    assert str(same.value).endswith("_upsample_lanczos2d_aa.)")


def test_onnx_without_a_cuda_provider_runs_model_and_noise_on_the_cpu(
    unet_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    from robusttest.models import onnx_runner as runner_mod

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    # as on a GPU machine whose onnxruntime is the CPU build (seen on an H200)
    monkeypatch.setattr(runner_mod, "resolve_device", lambda device: "cuda:0")
    with pytest.warns(RuntimeWarning, match="model and its noise run on the CPU"):
        runner = load_model(unet_onnx, device="cuda", threads=1)
    assert runner.device == "cpu" and "CPUExecutionProvider" in runner.backend
    assert runner(torch.zeros(2, 1, 32, 40)).device.type == "cpu"


def test_pt2_with_pickled_payload_is_refused(tmp_path: Path) -> None:
    good = save_pt2(_cnn(), tmp_path / "cnn.pt2", CLS_CARD)
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("_weights_config.json"):
                cfg = json.loads(data)
                next(iter(cfg["config"].values()))["use_pickle"] = True
                data = json.dumps(cfg).encode()
            dst.writestr(info, data)
    with pytest.raises(ModelError, match="pickled"):
        _load(bad)


# -- pickles are never unpickled ----------------------------------------------------------------


class _Boom:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.sentinel),))


@pytest.mark.parametrize("kind", ["state_dict", "module", "legacy"])
def test_pickled_checkpoints_are_refused_without_unpickling(tmp_path: Path, kind: str) -> None:
    sentinel = tmp_path / "unpickled"
    path = tmp_path / "model.pth"
    net = _cnn()
    if kind == "state_dict":
        torch.save({"state": net.state_dict(), "boom": _Boom(sentinel)}, path)
    elif kind == "module":
        net.boom = _Boom(sentinel)  # type: ignore[assignment]
        torch.save(net, path)
    else:
        torch.save({"boom": _Boom(sentinel)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError) as info:
        load_model(path, device="cpu", card_overrides=CLS_CARD.to_dict())
    msg = str(info.value)
    assert "model.pth" in msg and "pickle" in msg
    assert 'export_onnx(model, "model.onnx", card)' in msg and "torch.jit.script" in msg
    assert not sentinel.exists()


def test_junk_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x01\x02not a model")
    with pytest.raises(ModelError, match=r"junk\.onnx"):
        _load(junk)
    with pytest.raises(ModelError, match="not found"):
        _load(tmp_path / "missing.onnx")
    zipped = tmp_path / "other.pt"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("x/readme.txt", "hi")
    with pytest.raises(ModelError, match="neither TorchScript"):
        _load(zipped)


# -- outputs and hashes ---------------------------------------------------------------------


def test_check_outputs_lists_ids_with_nan_or_inf() -> None:
    out = torch.zeros(4, 2, 3, 3)
    out[1, 0, 2, 2] = float("nan")
    out[3, 1, 0, 0] = float("inf")
    with pytest.raises(ModelError) as info:
        check_outputs(out, ["a", "b", "c", "d"], source="m.onnx")
    msg = str(info.value)
    assert "m.onnx" in msg and "2 of 4" in msg and "b, d" in msg and "a," not in msg
    check_outputs(torch.zeros(2, 2), ["a", "b"])
    check_outputs(torch.ones(2, 3, dtype=torch.int64), ["a", "b"])  # integers are finite
    half = torch.zeros(3, 4, dtype=torch.float16)
    half[2, 1] = float("-inf")  # as a float16 overflow gives
    with pytest.raises(ModelError, match="1 of 3 image"):
        check_outputs(half, ["a", "b", "c"])
    with pytest.raises(ModelError, match="3 were given"):
        check_outputs(torch.zeros(2, 2), ["a", "b", "c"])


def test_nan_model_outputs_are_reported_by_id(tmp_path: Path) -> None:
    net = _cnn()
    export_onnx(net, tmp_path / "m.onnx", CLS_CARD)
    runner = _load(tmp_path / "m.onnx")
    x = torch.randn(3, 3, 32, 32)
    x[2] = float("nan")  # a NaN input poisons that image's output only
    with pytest.raises(ModelError, match=r"1 of 3 image\(s\): img2"):
        check_outputs(runner(x), ["img0", "img1", "img2"])


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_torchscript_card_is_json_extra_file(tmp_path: Path) -> None:
    path = save_torchscript(_cnn(), tmp_path / "m.pt", CLS_CARD)
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("extra/" + CARD_FILENAME))
        assert ModelCard.from_dict(json.loads(zf.read(name))) == CLS_CARD
    buf = io.BytesIO(path.read_bytes())
    assert zipfile.is_zipfile(buf)
