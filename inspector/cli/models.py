"""``inspector models list|promote|rollback|reseal``: the model store from the command line."""

from __future__ import annotations

from pathlib import Path

from inspector.errors import MissingPathError
from inspector.artifacts.store import describe, promote, rollback, version_dir

SHOWN_METRICS = ("val_macro_f1", "val_auroc", "val_miou", "val_accuracy")


def list_models(store: str | Path, name: str | None = None) -> list[dict]:
    """One row per version (oldest first) with its validation figures and whether it is active."""
    store = Path(store)
    if not store.is_dir():
        raise MissingPathError(f"model store {store} does not exist")
    names = [name] if name else sorted(d.name for d in store.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows = []
    for model in names:
        for v in describe(_model_dir(store, model)):
            figures = {k: round(x, 4) for k, x in v.validation.items() if k in SHOWN_METRICS}
            rows.append({"name": model, "version": v.version, "active": v.active, "backbone": v.backbone,
                         "created_at": v.created_at, **figures})
    return rows


def _model_dir(store: str | Path, name: str) -> Path:
    model_dir = Path(store) / name
    if not model_dir.is_dir():
        raise MissingPathError(f"model store {store} has no model {name!r}")
    return model_dir


def promote_version(store: str | Path, name: str, version: str) -> str:
    """Makes ``version`` active; only one of the model's own version folders (no path, no symlink) is accepted."""
    promote(_model_dir(store, name), version)
    return version


def reseal_version(store: str | Path, name: str, version: str) -> str:
    """Seals a version whose files were edited on purpose (see :func:`inspector.artifacts.bundle.reseal`); returns its path."""
    from inspector.artifacts.bundle import reseal  # imports torch: only for this command

    return str(reseal(version_dir(_model_dir(store, name), version)))


def rollback_version(store: str | Path, name: str) -> str:
    return rollback(_model_dir(store, name))
