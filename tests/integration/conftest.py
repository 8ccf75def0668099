"""Fixtures of the integration tests: Prometheus' promtool (checks configs and rules) and server (the end-to-end
scrape). ``make test`` installs them (Debian's ``prometheus`` package) where it can; the tests never install."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.artifacts.bundle import load_bundle
from inspector.artifacts.store import promote
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import MODEL_NAME, V2_THRESHOLDS, copy_version, Servers


def _prometheus_tool(name: str) -> str:
    """The path of ``name`` (``promtool`` or ``prometheus``): from PATH, else /usr/bin, where Debian's package puts it.

    Fails (never skips) when it is missing, so a machine without it cannot pass the checks silently.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found:
        return found
    pytest.fail(f"{name} is not installed; the deploy and Prometheus tests need it. `make test` installs it where "
                f"apt-get runs as root; elsewhere run `sudo apt-get install prometheus` (Debian/Ubuntu: the package "
                f"carries promtool and prometheus) or put Prometheus' {name} on PATH.", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' checker of configs and rules."""
    return _prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_server_binary() -> str:
    """The Prometheus server, for the end-to-end scrape test."""
    return _prometheus_tool("prometheus")


# ---------------------------------------------------------------- the service tests' store and servers

@pytest.fixture(scope="session")
def make_store(tiny_bundle, tmp_path_factory):
    """Returns a function that builds a fresh store ``<tmp>/store/line/{v1,v2}`` with v1 active; gives the model dir.
    v2 has the same weights and other thresholds (:data:`V2_THRESHOLDS`), so an answer shows which version gave it."""

    def make() -> Path:
        model_dir = tmp_path_factory.mktemp("served") / "store" / MODEL_NAME
        model_dir.mkdir(parents=True)
        copy_version(tiny_bundle, model_dir, "v1")
        copy_version(tiny_bundle, model_dir, "v2", V2_THRESHOLDS)
        promote(model_dir, "v1")
        return model_dir

    return make


@pytest.fixture
def servers():
    """Function-scoped servers for tests that change the service's state."""
    with Servers() as owner:
        yield owner


@pytest.fixture(scope="module")
def module_servers():
    """Servers shared by a module's read-only tests."""
    with Servers() as owner:
        yield owner


@pytest.fixture(scope="module")
def images(demo_data) -> dict[str, np.ndarray]:
    """Decoded demo frames (64 x 64 grayscale) by name, plus a non-square BGR frame."""
    out = {}
    for cls in ("good", "crack", "scratch", "spot"):
        for i in range(2):
            name = f"{cls}_{i:04d}"
            out[name] = cv2.imread(str(demo_data / "images" / cls / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    base = out["scratch_0000"]
    colour = cv2.merge([base, 255 - base, cv2.GaussianBlur(base, (5, 5), 0)])
    out["colour_wide"] = np.ascontiguousarray(cv2.resize(colour, (96, 72), interpolation=cv2.INTER_LINEAR))
    assert out["good_0000"].shape == (64, 64) and out["colour_wide"].shape == (72, 96, 3)
    return out


@pytest.fixture(scope="module")
def served(make_store, module_servers):
    model_dir = make_store()
    running = module_servers.start(model_dir)
    channel = module_servers.channel(running)
    return running, model_dir, channel


@pytest.fixture(scope="module")
def stub(served):
    return pb_grpc.InspectorStub(served[2])


@pytest.fixture(scope="module")
def bundle_thresholds(tiny_bundle):
    return load_bundle(tiny_bundle).thresholds

