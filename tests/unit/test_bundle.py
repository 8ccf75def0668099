"""Tests for model bundles (write, load, verify, seal, refuse) and the ACTIVE pointer of the model store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import torch

from inspector.artifacts import bundle as bundle_module
from inspector.artifacts import manifest as manifest_module
from inspector.artifacts.bundle import (FORMAT, FORMAT_VERSION, UNSEALED, BundleError, derive_bundle, load_bundle, reseal,
                              write_bundle)
from inspector.artifacts.meta import BundleMeta
from inspector.config import PreprocessSpec, Thresholds
from inspector.errors import UsageError
from inspector.artifacts.export import EXPORT_DIR
from inspector.artifacts.manifest import MANIFEST_FILE
from inspector.model import DefectNet
from inspector.artifacts.store import ACTIVE_FILE, StoreError, active_version, model_names, set_active

CLASSES = ["good", "a", "b"]


def _meta() -> BundleMeta:
    return BundleMeta(backbone="efficientnet_lite0", classes=tuple(CLASSES), preprocess=PreprocessSpec(64, 64),
                      thresholds=Thresholds())


@pytest.fixture(scope="module")
def model() -> DefectNet:
    """A randomly initialised network whose BatchNorm statistics are not the defaults (so they must round-trip)."""
    torch.manual_seed(0)
    net = DefectNet("efficientnet_lite0", len(CLASSES), pretrained=False)
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def sample_input() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model: DefectNet) -> Path:
    """One written bundle; tests that damage a bundle work on their own copy of it."""
    return write_bundle(tmp_path_factory.mktemp("template"), "m", model, _meta())


@pytest.fixture()
def bundle_dir(tmp_path: Path, template: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "store" / "m" / "v1"))


def _refused(path: Path, match: str) -> BundleError:
    with pytest.raises(BundleError, match=match) as info:
        load_bundle(path)
    return info.value


# --- writing ----------------------------------------------------------------------------------------------------


def test_write_creates_numbered_versions_without_leftovers(tmp_path: Path, model: DefectNet) -> None:
    store = tmp_path / "store"
    meta = _meta()
    first = write_bundle(store, "m", model, meta)
    second = write_bundle(store, "m", model, meta)
    assert first == store / "m" / "v1"
    assert second == store / "m" / "v2"
    assert sorted(p.name for p in (store / "m").iterdir()) == ["v1", "v2"]  # no temporary folders
    assert sorted(p.name for p in first.iterdir()) == [MANIFEST_FILE, "bundle.json", "weights.pt"]
    assert meta == _meta()  # the caller's meta is not modified (the writer's fields are set on a copy)
    assert first.stat().st_mode & 0o777 == 0o755  # readable by the serving user, unlike mkdtemp's 0o700


def test_bundle_json_contents(bundle_dir: Path) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    assert meta["format"] == FORMAT == "inspector-bundle"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert (meta["name"], meta["version"]) == ("m", "v1")
    assert meta["weights_sha256"] == hashlib.sha256((bundle_dir / "weights.pt").read_bytes()).hexdigest()
    assert meta["manifest"] == MANIFEST_FILE
    assert meta["libraries"]["torch"] == torch.__version__
    assert datetime.fromisoformat(meta["created_at"]).tzinfo is not None
    given = ("backbone", "classes", "preprocess", "thresholds")
    assert {k: meta[k] for k in given} == {"backbone": "efficientnet_lite0", "classes": CLASSES,  # tuples as lists
                                           "preprocess": json.loads(json.dumps(dataclasses.asdict(PreprocessSpec(64, 64)))),
                                           "thresholds": dataclasses.asdict(Thresholds())}
    assert BundleMeta.read(bundle_dir) == dataclasses.replace(
        _meta(), name="m", version="v1", created_at=meta["created_at"], weights_sha256=meta["weights_sha256"],
        manifest=MANIFEST_FILE, libraries=meta["libraries"])


def test_write_extra_files_and_dataclass_values(tmp_path: Path, model: DefectNet) -> None:
    meta = dataclasses.replace(_meta(), thresholds=Thresholds(reject=0.7, review=0.4),
                               extra={"data_root": tmp_path / "data"})
    path = write_bundle(tmp_path, "m", model, meta, extra_files={"history.json": b"[1, 2]", "roc.png": b"\x89PNG"})
    assert (path / "history.json").read_bytes() == b"[1, 2]"
    assert (path / "roc.png").read_bytes() == b"\x89PNG"
    loaded = load_bundle(path)
    assert loaded.thresholds == Thresholds(reject=0.7, review=0.4)
    assert loaded.meta.extra["data_root"] == str(tmp_path / "data")


def test_write_refuses_unserialisable_meta_and_leaves_nothing(tmp_path: Path, model: DefectNet) -> None:
    with pytest.raises(TypeError, match="set"):
        write_bundle(tmp_path, "m", model, dataclasses.replace(_meta(), extra={"oops": {1, 2}}))
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space"])
def test_write_refuses_bad_names(tmp_path: Path, model: DefectNet, name: str) -> None:
    with pytest.raises(UsageError, match="model name"):
        write_bundle(tmp_path, name, model, _meta())
    assert list(tmp_path.iterdir()) == []


def test_write_retries_when_another_writer_took_the_version(
    tmp_path: Path, model: DefectNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    taken = write_bundle(store, "m", model, _meta())
    before = (taken / "bundle.json").read_bytes()
    real = bundle_module.next_version
    answers = iter(["v1"])  # a stale answer first, as if another writer renamed v1 into place meanwhile
    monkeypatch.setattr(bundle_module, "next_version", lambda d: next(answers, None) or real(d))
    path = write_bundle(store, "m", model, _meta())
    assert path == store / "m" / "v2"
    assert (taken / "bundle.json").read_bytes() == before  # v1 untouched
    assert json.loads((path / "bundle.json").read_text())["version"] == "v2"
    assert sorted(p.name for p in (store / "m").iterdir()) == ["v1", "v2"]


# --- loading ----------------------------------------------------------------------------------------------------


def test_load_and_build_reproduces_outputs(bundle_dir: Path, model: DefectNet, sample_input: torch.Tensor) -> None:
    loaded = load_bundle(bundle_dir)
    assert loaded.path == bundle_dir
    assert (loaded.name, loaded.version) == ("m", "v1")
    assert loaded.classes == tuple(CLASSES)
    assert loaded.spec == PreprocessSpec(64, 64)
    assert loaded.thresholds == Thresholds()
    rebuilt = loaded.build_model()
    assert not rebuilt.training
    with torch.no_grad():
        expected = model(sample_input)
        actual = rebuilt(sample_input)
    assert actual.logits.shape == (2, 3) and actual.mask_logits.shape == (2, 1, 64, 64)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(actual.mask_logits, expected.mask_logits, atol=1e-6, rtol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_refuses_missing_folder(tmp_path: Path) -> None:
    err = _refused(tmp_path / "nope", "does not exist")
    assert str(tmp_path / "nope") in str(err)


def test_refuses_folder_without_bundle_json(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").unlink()
    _refused(bundle_dir, "neither a bundle")


def test_refuses_bundle_json_that_is_not_json(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text("{ this is not json")
    err = _refused(bundle_dir, "unreadable")
    assert "bundle.json" in str(err)


@pytest.mark.parametrize("content", [{"name": "m", "classes": ["good"]}, ["inspector-bundle"], {"format": "other"}])
def test_refuses_foreign_json(bundle_dir: Path, content) -> None:
    (bundle_dir / "bundle.json").write_text(json.dumps(content))
    _refused(bundle_dir, "not an inspector model bundle")


@pytest.mark.parametrize("version", [2, 0, None, "1"])
def test_refuses_wrong_format_version(bundle_dir: Path, version) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta["format_version"] = version
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    err = _refused(bundle_dir, "format version")
    assert "not supported" in str(err) and "expected 1" in str(err)


@pytest.mark.parametrize("key", ["weights_sha256", "classes", "backbone", "preprocess"])
def test_refuses_bundle_json_missing_a_key(bundle_dir: Path, key: str) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    del meta[key]
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    err = _refused(bundle_dir, "lacks")
    assert key in str(err)


def test_refuses_missing_weights(bundle_dir: Path) -> None:
    (bundle_dir / "weights.pt").unlink()
    _refused(bundle_dir, "weights.pt is missing")


def _build_refused(path: Path, match: str) -> BundleError:
    loaded = load_bundle(path)  # metadata and seal are fine; the weights are verified again when the model is built
    with pytest.raises(BundleError, match=match) as info:
        loaded.build_model()
    return info.value


def _edit_meta(bundle_dir: Path, **changes) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    (bundle_dir / "bundle.json").write_text(json.dumps(meta | changes))


def test_refuses_truncated_weights(bundle_dir: Path) -> None:
    weights = bundle_dir / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = _refused(bundle_dir, "does not match")
    assert "truncated or was modified" in str(err) and str(weights) in str(err)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "resealed"])
def test_refuses_weights_with_a_flipped_byte(bundle_dir: Path, sealed: bool) -> None:
    """Caught by the seal; and a reseal does not vouch for weights: bundle.json's weights_sha256 still holds."""
    weights = bundle_dir / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    if sealed:
        _refused(bundle_dir, f"weights.pt: sha256 .* does not match {MANIFEST_FILE}")
    else:
        err = _build_refused(reseal(bundle_dir), "sha256 .* does not match bundle.json's")
        assert "weights.pt" in str(err)


def test_refuses_weights_that_do_not_fit_the_network(bundle_dir: Path) -> None:
    """A consistent checksum but a network of another shape (here: the class count) is still refused."""
    _edit_meta(bundle_dir, classes=["good", "a"])
    _build_refused(reseal(bundle_dir), "cannot load weights")


def test_refuses_garbage_weights_with_matching_checksum(bundle_dir: Path) -> None:
    garbage = b"not a torch file" * 10
    (bundle_dir / "weights.pt").write_bytes(garbage)
    _edit_meta(bundle_dir, weights_sha256=hashlib.sha256(garbage).hexdigest())
    _build_refused(reseal(bundle_dir), "cannot load weights")


# --- seal -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, read", [
    ({"thresholds": {"reject": 0.99, "review": 0.1}}, {"thresholds": Thresholds(reject=0.99, review=0.1)}),
    ({"classes": ["good", "b", "a"]}, {"classes": ("good", "b", "a")}),
], ids=["thresholds", "class-order"])
def test_refuses_an_edited_bundle_json_until_resealed(bundle_dir: Path, changes: dict, read: dict) -> None:
    _edit_meta(bundle_dir, **changes)
    err = _refused(bundle_dir, "bundle.json: sha256 .* does not match")
    assert "inspector calibrate" in str(err) and "inspector models reseal" in str(err)  # says what to do
    assert reseal(bundle_dir) == bundle_dir
    meta = load_bundle(bundle_dir).meta
    assert {k: getattr(meta, k) for k in read} == read


def test_refuses_added_and_missing_files(bundle_dir: Path) -> None:
    (bundle_dir / "notes.txt").write_text("added by hand")
    _refused(bundle_dir, f"notes.txt: not listed in {MANIFEST_FILE}")
    (bundle_dir / "notes.txt").unlink()
    (bundle_dir / MANIFEST_FILE).unlink()
    _refused(bundle_dir, f"{MANIFEST_FILE} is missing, but bundle.json says the bundle was sealed")


def test_models_reseal_command(bundle_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from inspector.cli import main

    store = ["--store", str(bundle_dir.parent.parent), "--name", "m"]
    _edit_meta(bundle_dir, thresholds={"reject": 0.9, "review": 0.5})
    assert main(["models", "reseal", *store, "v1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "m", "sealed": str(bundle_dir)}
    assert load_bundle(bundle_dir).thresholds == Thresholds(reject=0.9, review=0.5)
    assert main(["models", "reseal", *store, "../m/v1"]) == 2
    assert "no version '../m/v1'" in capsys.readouterr().err


def test_exports_are_outside_the_seal(bundle_dir: Path) -> None:
    """`inspector export` writes into a sealed bundle later; its files carry their own checksums (export.json)."""
    assert EXPORT_DIR in UNSEALED
    (bundle_dir / EXPORT_DIR).mkdir()
    (bundle_dir / EXPORT_DIR / "model.onnx").write_bytes(b"written after sealing")
    assert load_bundle(bundle_dir).version == "v1"


def test_a_bundle_written_before_seals_loads_with_one_warning(bundle_dir: Path, caplog) -> None:
    (bundle_dir / MANIFEST_FILE).unlink()
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    del meta["manifest"]
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    caplog.set_level(logging.WARNING, logger="inspector.artifacts.bundle")
    for _ in range(2):
        assert load_bundle(bundle_dir).version == "v1"
    warned = [r.getMessage() for r in caplog.records if MANIFEST_FILE in r.getMessage()]
    assert len(warned) == 1 and str(bundle_dir) in warned[0] and "bundle.json" in warned[0]
    reseal(bundle_dir)
    (bundle_dir / "notes.txt").write_text("added by hand")
    _refused(bundle_dir, "not listed")  # once sealed, checked like a new bundle


def test_reseal_refuses_what_is_not_a_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        reseal(tmp_path / "nope")
    (bundle_dir / "alias.pt").symlink_to(bundle_dir / "weights.pt")
    with pytest.raises(BundleError, match="alias.pt is a symbolic link"):
        reseal(bundle_dir)
    _edit_meta(bundle_dir, format_version=7)
    with pytest.raises(BundleError, match="format version 7"):
        reseal(bundle_dir)


def test_derived_bundle_is_sealed_anew(bundle_dir: Path) -> None:
    original = load_bundle(bundle_dir)
    derived = derive_bundle(original, {"thresholds": Thresholds(reject=0.8, review=0.2)})
    assert derived == bundle_dir.parent / "v2"
    meta = load_bundle(derived).meta
    assert (meta.thresholds, meta.version, meta.derived_from) == (Thresholds(reject=0.8, review=0.2), "v2", "v1")
    assert dataclasses.replace(meta, thresholds=original.thresholds, version="v1", derived_from=None,
                               created_at=original.meta.created_at) == original.meta  # nothing else changed
    assert (derived / MANIFEST_FILE).read_text() != (bundle_dir / MANIFEST_FILE).read_text()


# --- store ------------------------------------------------------------------------------------------------------


def test_load_model_folder_resolves_active_version(tmp_path: Path, model: DefectNet) -> None:
    store = tmp_path / "store"
    write_bundle(store, "m", model, _meta())
    write_bundle(store, "m", model, _meta())
    model_dir = store / "m"
    _refused(model_dir, "neither a bundle")  # no ACTIVE yet
    set_active(model_dir, "v1")
    assert (model_dir / ACTIVE_FILE).read_text() == "v1\n"
    loaded = load_bundle(model_dir)
    assert (loaded.version, loaded.path) == ("v1", model_dir / "v1")
    set_active(model_dir, "v2")
    loaded = load_bundle(model_dir)
    assert (loaded.version, loaded.path) == ("v2", model_dir / "v2")
    assert sorted(p.name for p in model_dir.iterdir()) == [ACTIVE_FILE, "v1", "v2"]  # no temporary pointer files


def test_set_active_missing_version(tmp_path: Path, model: DefectNet) -> None:
    model_dir = write_bundle(tmp_path, "m", model, _meta()).parent
    set_active(model_dir, "v1")
    with pytest.raises(StoreError, match="no version 'v9'"):
        set_active(model_dir, "v9")
    assert active_version(model_dir) == "v1"  # the pointer is unchanged


def test_active_version_none_when_unset_and_refuses_a_dangling_pointer(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    (model_dir / "v1").mkdir(parents=True)
    assert active_version(model_dir) is None
    (model_dir / ACTIVE_FILE).write_text("\n")
    assert active_version(model_dir) is None
    (model_dir / ACTIVE_FILE).write_text("v3\n")
    with pytest.raises(StoreError, match=r"ACTIVE names 'v3', which is not a version of m .*v3 does not exist"):
        active_version(model_dir)
    (model_dir / ACTIVE_FILE).write_text("v1")
    assert active_version(model_dir) == "v1"


def test_load_model_folder_refuses_a_version_that_says_it_is_another(tmp_path: Path, model: DefectNet) -> None:
    model_dir = write_bundle(tmp_path, "m", model, _meta()).parent
    shutil.copytree(model_dir / "v1", model_dir / "v5")  # by hand: its bundle.json still says m/v1
    set_active(model_dir, "v5")
    err = _refused(model_dir, "says it is m/v1, but its folder is m/v5")
    assert "promote the original" in str(err) and "re-seal" in str(err)


def test_model_names_lists_models_with_an_active_version(tmp_path: Path, model: DefectNet) -> None:
    store = tmp_path / "store"
    assert model_names(store) == []  # no store yet
    write_bundle(store, "beta", model, _meta())
    write_bundle(store, "alpha", model, _meta())
    write_bundle(store, "inactive", model, _meta())
    (store / "README").write_text("not a model")
    assert model_names(store) == []
    set_active(store / "beta", "v1")
    set_active(store / "alpha", "v1")
    assert model_names(store) == ["alpha", "beta"]


def test_thresholds_for_a_class_the_model_does_not_have_are_refused(bundle_dir: Path) -> None:
    """A per-class threshold naming a class the model never predicts would never apply: refused when bundle.json is
    read (so neither loaded nor re-sealed), naming it."""
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    _edit_meta(bundle_dir, thresholds=meta["thresholds"] | {"per_class": {"dent": 0.4}})
    with pytest.raises(BundleError, match=r"bundle.json: per_class\['dent'\] is not a defect class"):
        reseal(bundle_dir)
    manifest_module.write(bundle_dir, UNSEALED)  # sealed by other means: still refused
    _refused(bundle_dir, "dent")
