"""The model store: versions, promote, rollback, and the models command."""

import json

import pytest

from inspector.cli import main
from inspector.store import active_version, previous_version, promote, rollback, versions


@pytest.fixture()
def store(tmp_path):
    model_dir = tmp_path / "line"
    for v in ("v1", "v2", "v10"):
        (model_dir / v).mkdir(parents=True)
        (model_dir / v / "bundle.json").write_text(json.dumps({"validation": {"val_macro_f1": 0.5}, "backbone": "b"}))
    return tmp_path


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
    with pytest.raises(ValueError, match="no earlier active version"):
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
