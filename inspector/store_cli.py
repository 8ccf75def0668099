"""``inspector models list|promote|rollback``: the model store from the command line."""

from __future__ import annotations

from pathlib import Path

from inspector.store import describe, promote, rollback, versions

SHOWN_METRICS = ("val_macro_f1", "val_auroc", "val_miou", "val_accuracy")


def list_models(store: str | Path, name: str | None = None) -> list[dict]:
    """One row per version (oldest first) with its validation figures and whether it is active."""
    store = Path(store)
    if not store.is_dir():
        raise FileNotFoundError(f"model store {store} does not exist")
    names = [name] if name else sorted(d.name for d in store.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows = []
    for model in names:
        model_dir = store / model
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model store {store} has no model {model!r}")
        for v in describe(model_dir):
            figures = {k: round(x, 4) for k, x in v.validation.items() if k in SHOWN_METRICS}
            rows.append({"name": model, "version": v.version, "active": v.active, "backbone": v.backbone,
                         "created_at": v.created_at, **figures})
    return rows


def promote_version(store: str | Path, name: str, version: str) -> str:
    model_dir = Path(store) / name
    if not model_dir.is_dir() or version not in versions(model_dir):
        raise FileNotFoundError(f"{model_dir} has no version {version!r}")
    promote(model_dir, version)
    return version


def rollback_version(store: str | Path, name: str) -> str:
    return rollback(Path(store) / name)
