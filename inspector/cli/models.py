"""``inspector models list|promote|rollback|reseal``: the model store from the command line."""

from __future__ import annotations

import argparse
import json
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


def run(args: argparse.Namespace) -> None:
    if args.action == "list":
        for row in list_models(args.store, args.name):
            print(json.dumps(row))
    elif args.action == "promote":
        print(json.dumps({"name": args.name, "active": promote_version(args.store, args.name, args.version)}))
    elif args.action == "reseal":
        print(json.dumps({"name": args.name, "sealed": reseal_version(args.store, args.name, args.version)}))
    else:
        print(json.dumps({"name": args.name, "active": rollback_version(args.store, args.name)}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the model store: list versions, promote one, roll back, re-seal an edit")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("list", "versions with their validation figures"), ("promote", "make a version active"),
                         ("rollback", "re-activate the previously active version"),
                         ("reseal", "accept a deliberate edit of a version's files (rewrites its SHA256SUMS)")):
        a = actions.add_parser(action, help=text)
        a.add_argument("--store", default="models")
        a.add_argument("--name", default=None if action == "list" else "default",
                       help="model name" + (" (default: all)" if action == "list" else " (default: default)"))
        if action in ("promote", "reseal"):
            a.add_argument("version", help="e.g. v3")
    p.set_defaults(func=run)
