"""The model store: versions, promote, rollback, and the models command."""

import json
import re
import shutil

import pytest

from inspector.cli import main
from inspector.artifacts.meta import BundleMeta
from inspector.artifacts.store import (ACTIVE_FILE, HISTORY_FILE, StoreError, VersionInfo, active_version, describe,
                                       model_names, previous_version, promote, rollback, version_dir, versions)
from inspector.config import PreprocessSpec


@pytest.fixture()
def store(tmp_path):
    model_dir = tmp_path / "line"
    for v in ("v1", "v2", "v10"):
        (model_dir / v).mkdir(parents=True)
        BundleMeta(classes=("good", "dent"), preprocess=PreprocessSpec(), backbone="b", name="line", version=v,
                   created_at=f"2026-11-{v[1:]}", weights_sha256="0" * 64,
                   validation={"val_macro_f1": 0.5, "phase": "finetune"}).write(model_dir / v)
    return tmp_path


def test_describe_lists_what_each_bundle_json_says_and_nothing_for_one_it_cannot_read(store):
    model_dir = store / "line"
    (model_dir / "v2" / "bundle.json").write_text(json.dumps({"validation": {"val_macro_f1": 0.9}, "backbone": "x"}))
    promote(model_dir, "v10")
    assert describe(model_dir) == [VersionInfo("v1", False, "b", "2026-11-1", {"val_macro_f1": 0.5}),
                                   VersionInfo("v2", False, None, "", {}),  # not an inspector bundle.json
                                   VersionInfo("v10", True, "b", "2026-11-10", {"val_macro_f1": 0.5})]


def test_versions_sort_by_number(store):
    assert versions(store / "line") == ["v1", "v2", "v10"]


def test_promote_and_rollback_walk_the_history(store):
    model_dir = store / "line"
    for v in ("v1", "v2", "v10"):
        promote(model_dir, v)
    assert active_version(model_dir) == "v10"
    assert previous_version(model_dir) == "v2"
    assert rollback(model_dir) == "v2" and active_version(model_dir) == "v2"
    assert rollback(model_dir) == "v1" and active_version(model_dir) == "v1"
    with pytest.raises(StoreError, match="no earlier active version"):
        rollback(model_dir)
    assert active_version(model_dir) == "v1"


def test_models_command(store, capsys):
    assert main(["models", "promote", "--store", str(store), "--name", "line", "v2"]) == 0
    assert main(["models", "promote", "--store", str(store), "--name", "line", "v10"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--store", str(store)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["version"], r["active"]) for r in rows] == [("v1", False), ("v2", False), ("v10", True)]
    assert rows[0]["val_macro_f1"] == 0.5
    assert main(["models", "rollback", "--store", str(store), "--name", "line"]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == "v2"
    assert main(["models", "promote", "--store", str(store), "--name", "line", "v7"]) == 2
    assert "no version 'v7'" in capsys.readouterr().err


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfev2\n", "byte 0xff at offset 0 is not ASCII"),
    (b"/etc\n", "'/etc', which is not a version of line (versions are folders named v1, v2"),
    (b"../line/v1\n", "'../line/v1', which is not a version of line"),
    (b"v7\n", "line/v7 does not exist"),
], ids=["not-utf8", "absolute", "relative", "dangling"])
def test_an_unusable_active_pointer_is_refused_naming_the_file(store, content, words):
    model_dir = store / "line"
    (model_dir / ACTIVE_FILE).write_bytes(content)
    with pytest.raises(StoreError) as info:
        active_version(model_dir)
    assert str(info.value).startswith(str(model_dir / ACTIVE_FILE)) and words in str(info.value)
    assert "inspector models promote" in str(info.value)
    assert [v.active for v in describe(model_dir)] == [False, False, False]  # listing still works
    assert model_names(store) == ["line"]  # serving it says what is wrong instead of "no such model"


@pytest.fixture()
def linked(store, tmp_path):
    """``line/v3`` is a symbolic link to a folder outside the store."""
    outside = tmp_path / "outside" / "v3"
    shutil.copytree(store / "line" / "v1", outside)
    (store / "line" / "v3").symlink_to(outside, target_is_directory=True)
    return store / "line"


def test_a_symlinked_version_is_not_a_version(linked, capsys):
    assert versions(linked) == ["v1", "v2", "v10"]
    for version in ("v3", "../line/v1", str(linked / "v1")):
        with pytest.raises(StoreError, match=f"no version {re.escape(repr(version))}"):
            version_dir(linked, version)
        with pytest.raises(StoreError):
            promote(linked, version)
    (linked / ACTIVE_FILE).write_text("v3\n")
    with pytest.raises(StoreError, match="v3 is a symbolic link; copy the bundle into the store instead"):
        active_version(linked)
    assert main(["models", "promote", "--store", str(linked.parent), "--name", "line", "v3"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert not (linked / HISTORY_FILE).exists()  # nothing was promoted
