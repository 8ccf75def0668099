"""Fixtures for the gRPC service tests: a two-version model store built from ``tiny_bundle`` and in-process servers."""

import json
import shutil
import time
from pathlib import Path

import grpc
import pytest

from inspector.config import ServeConfig
from inspector.store import promote

MODEL_NAME = "line"


def copy_version(source: Path, model_dir: Path, version: str) -> Path:
    """``source`` bundle copied to ``model_dir/version``, its bundle.json renamed (weights untouched: checksum holds)."""
    target = model_dir / version
    shutil.copytree(source, target)
    meta_file = target / "bundle.json"
    meta = json.loads(meta_file.read_text())
    meta["name"], meta["version"] = MODEL_NAME, version
    meta_file.write_text(json.dumps(meta, indent=2))
    return target


@pytest.fixture(scope="session")
def make_store(tiny_bundle, tmp_path_factory):
    """Returns a function that builds a fresh store ``<tmp>/store/line/{v1,v2}`` with v1 active; gives the model dir."""

    def make() -> Path:
        model_dir = tmp_path_factory.mktemp("served") / "store" / MODEL_NAME
        model_dir.mkdir(parents=True)
        for version in ("v1", "v2"):
            copy_version(tiny_bundle, model_dir, version)
        promote(model_dir, "v1")
        return model_dir

    return make


def serve_config(**overrides) -> ServeConfig:
    """Loopback, ephemeral port, CPU, few threads, no store polling unless asked."""
    base = dict(host="127.0.0.1", grpc_port=0, device="cpu", workers=2, grpc_threads=8, watch_seconds=0.0,
                grace_seconds=2.0)
    return ServeConfig(**(base | overrides))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Polls ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Servers:
    """Starts in-process servers and stops every one of them (and closes their channels) at teardown."""

    def __init__(self) -> None:
        self.running = []
        self.channels = []

    def start(self, model_dir: Path, wait: bool = True, **cfg):
        from inspector.service.server import start_server

        running = start_server(serve_config(**cfg), model_dir=model_dir)
        self.running.append(running)
        if wait:
            assert running.loaded.wait(60), "the model did not load"
        return running

    def channel(self, running) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        self.channels.append(channel)
        return channel

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for running in self.running:
            running.stop(grace=0.5)


@pytest.fixture
def servers():
    """Function-scoped servers for tests that change the service's state."""
    owner = Servers()
    try:
        yield owner
    finally:
        owner.close()


@pytest.fixture(scope="module")
def module_servers():
    owner = Servers()
    try:
        yield owner
    finally:
        owner.close()
