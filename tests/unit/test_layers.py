"""The package's layers: every import of every module runs downward (or stays in its own package), and the layers
that must stay light do not import what they must not."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "inspector"
# lowest first; a module may import its own package and any package of a lower layer
LAYERS = [
    {"config", "errors", "progress", "status_details", "v1", "oip", "memory"},
    {"imaging", "model", "data"},
    {"artifacts"},
    {"inference"},
    {"service", "train", "evaluation", "client", "review"},
    {"cli", "healthcheck", "__main__"},
]
SAME_LAYER = {  # the imports allowed between packages of one layer
    ("config", "errors"),  # a config value the dataclasses refuse is a UsageError
    ("data", "imaging"),  # data sets decode and preprocess their images as serving does
    ("train", "evaluation"),  # training calibrates and measures with evaluation's code
    ("__main__", "cli"), ("cli", "healthcheck"),
}
FORBIDDEN = {  # third-party modules a package must never import
    "inference": {"grpc", "prometheus_client"},
    "imaging": {"torch"},
    "config": {"torch", "grpc", "cv2"},
    "errors": {"torch", "grpc", "cv2"},
}


def _part(module: str) -> str:
    """``inspector.service.pipeline`` -> ``service``; ``inspector.config`` -> ``config``."""
    return module.split(".")[1]


def _layer(part: str) -> int:
    return next(i for i, parts in enumerate(LAYERS) if part in parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _module(path: Path) -> str:
    return ".".join(("inspector", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if not {"v1", "oip"} & set(p.relative_to(PACKAGE).parts[:1]))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path):
    me = _part(_module(path)) if "." in _module(path) else "__init__"
    if me == "__init__":
        return
    upward = []
    for name in _imports(path):
        if not name.startswith("inspector.") or name.count(".") < 1:
            continue
        other = _part(name)
        if other == me or not any(other in parts for parts in LAYERS):
            continue
        if _layer(other) > _layer(me) or (_layer(other) == _layer(me) and (me, other) not in SAME_LAYER):
            upward.append(name)
    assert upward == [], f"{_module(path)} imports {sorted(set(upward))}: upward or sideways across layers"


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_light_layers_stay_light(part):
    paths = [p for p in MODULES if "." in _module(p) and _part(_module(p)) == part]
    assert paths
    for path in paths:
        heavy = {n.split(".")[0] for n in _imports(path)} & FORBIDDEN[part]
        assert not heavy, f"{path.relative_to(PACKAGE)} imports {sorted(heavy)}"


def test_every_package_has_a_layer():
    parts = {_part(_module(p)) for p in MODULES if "." in _module(p)}
    assert parts <= set().union(*LAYERS), parts - set().union(*LAYERS)
