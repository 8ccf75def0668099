"""The model store's faults as the service meets them: an unusable ACTIVE pointer, a pointer or version folder that
leads outside the store, a version folder copied by hand, an edited bundle. Each is refused (logged once, naming
the file), the current model keeps serving with its threshold overrides, and the next valid promotion is taken."""

import json
import logging
import shutil
import threading
from pathlib import Path

import pytest

from inspector.artifacts.bundle import reseal
from inspector.cli import main
from inspector.config import Thresholds
from inspector.service.models import ModelManager
from inspector.artifacts.store import ACTIVE_FILE, StoreError, promote

LOGGER = "inspector.service.models"
GARBAGE = b"\xff\xfev2\n"  # not UTF-8


class Swaps:
    """Records each swap's result; ``taken`` is set when a swap to ``wanted`` succeeds."""

    def __init__(self, wanted: str = "") -> None:
        self.results, self.wanted, self.taken = [], wanted, threading.Event()

    def __call__(self, result: str, predictor) -> None:
        self.results.append(result)
        if predictor is not None and predictor.version == self.wanted:
            self.taken.set()


@pytest.fixture()
def manager(line_store):
    models = ModelManager(model_dir=line_store, device="cpu", on_swap=Swaps("line/v2"))
    yield models
    models.stop()


def errors(caplog, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and words in r.getMessage()]


def test_the_watcher_survives_a_garbage_active_says_so_once_and_takes_the_next_promotion(line_store, manager, caplog):
    manager.load()
    caplog.set_level(logging.ERROR, logger=LOGGER)
    (line_store / ACTIVE_FILE).write_bytes(GARBAGE)
    polls, polled = [], threading.Event()
    sync = manager.sync_with_store

    def counted() -> bool:
        polls.append(1)
        polled.set() if len(polls) >= 4 else None
        return sync()

    manager.sync_with_store = counted  # the watcher's loop calls it through the instance
    manager.watch(0.01)
    assert polled.wait(60), "the watcher stopped polling"
    assert manager.current.version == "line/v1"
    assert len(errors(caplog, str(line_store / ACTIVE_FILE))) == 1  # once, not on every poll
    assert "not ASCII" in errors(caplog, str(line_store / ACTIVE_FILE))[0]
    promote(line_store, "v2")
    assert manager.on_swap.taken.wait(60), "the promotion after the garbage was not taken"
    assert manager.current.version == "line/v2"




@pytest.mark.parametrize("pointer, words", [
    (lambda line_store, outside: str(outside), "which is not a version of line"),
    (lambda line_store, outside: "../../elsewhere/line/v3", "which is not a version of line"),
    (lambda line_store, outside: (line_store / "v3").symlink_to(outside, target_is_directory=True) or "v3",
     "v3 is a symbolic link"),
], ids=["absolute", "relative", "symlinked-folder"])
def test_a_pointer_out_of_the_store_is_never_followed(line_store, manager, tiny_bundle, add_version, caplog, pointer,
                                                      words):
    manager.load()
    caplog.set_level(logging.ERROR, logger=LOGGER)
    outside = add_version(tiny_bundle, line_store.parent.parent / "elsewhere" / "line", "v3")  # valid, named line/v3
    (line_store / ACTIVE_FILE).write_text(pointer(line_store, outside) + "\n")
    assert [manager.sync_with_store() for _ in range(3)] == [False] * 3
    assert manager.current.version == "line/v1" and manager.current.bundle.path == line_store / "v1"
    assert len(errors(caplog, words)) == 1 and str(line_store / ACTIVE_FILE) in errors(caplog, words)[0]
    with pytest.raises(StoreError, match="no version"):
        manager.activate(str(line_store / "v3") if words.endswith("link") else "../../elsewhere/line/v3")
    assert manager.on_swap.results == ["success"]


def _set_meta(bundle_dir: Path, **changes) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    (bundle_dir / "bundle.json").write_text(json.dumps(meta | changes))


def _copied_by_hand(line_store: Path, add_version) -> None:
    shutil.copytree(line_store / "v1", line_store / "v5")  # `cp -r v1 v5`: bundle.json still says line/v1


def _edited(line_store: Path, add_version) -> None:
    v5 = add_version(line_store / "v1", line_store, "v5")  # a valid v5, then an edit by hand
    _set_meta(v5, thresholds=json.loads((v5 / "bundle.json").read_text())["thresholds"] | {"reject": 0.99})


@pytest.mark.parametrize("damage, words", [
    (_copied_by_hand, "says it is line/v1, but its folder is line/v5"),
    (_edited, "bundle.json: sha256"),
], ids=["copied-by-hand", "edited-bundle-json"])
def test_a_bad_version_is_refused_once_keeping_the_overrides_until_promoted_again(line_store, manager, add_version,
                                                                                   caplog, damage, words):
    manager.load()
    override = manager.set_thresholds(Thresholds(reject=0.42, review=0.21))
    caplog.set_level(logging.ERROR, logger=LOGGER)
    damage(line_store, add_version)
    promote(line_store, "v5")
    assert [manager.sync_with_store() for _ in range(3)] == [False] * 3
    assert manager.on_swap.results == ["success", "failure"]  # one failed swap, not one per poll
    assert manager.current.version == "line/v1" and manager.thresholds(manager.current) == override
    assert len(errors(caplog, words)) == 1 and "cannot switch to line/v5" in errors(caplog, words)[0]
    _set_meta(line_store / "v5", version="v5")  # the operator fixes it on purpose, re-seals and promotes it again
    reseal(line_store / "v5")
    promote(line_store, "v5")
    assert manager.sync_with_store() and manager.current.version == "line/v5"


def test_a_garbage_active_at_start_names_the_file(line_store, manager, caplog, capsys):
    (line_store / ACTIVE_FILE).write_bytes(GARBAGE)
    with pytest.raises(StoreError, match=f"{line_store / ACTIVE_FILE}: byte 0xff at offset 0 is not ASCII"):
        manager.load()
    caplog.set_level(logging.ERROR, logger=LOGGER)
    assert not manager.sync_with_store() and caplog.records == []  # the start already said it
    promote(line_store, "v1")
    assert manager.sync_with_store() and manager.current.version == "line/v1"
    (line_store / ACTIVE_FILE).write_bytes(GARBAGE)
    assert main(["serve", "--model", str(line_store)]) == 2  # fails before serving
    assert f"{line_store / ACTIVE_FILE}: byte 0xff" in capsys.readouterr().err
