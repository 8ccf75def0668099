"""The container health probe against a real in-process gRPC health service."""

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from inspector.healthcheck import check, describe_rpc_error, main
from inspector.status_details import rich_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def health_server():
    """A gRPC server with only grpc.health.v1; yields (servicer, target)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serving_exits_0(health_server, capsys):
    servicer, target = health_server
    servicer.set("", SERVING)
    assert check(target) == (True, f"{target}: SERVING")
    assert main(["--target", target]) == 0
    assert "SERVING" in capsys.readouterr().out


def test_not_serving_exits_1(health_server, capsys):
    servicer, target = health_server
    servicer.set("", NOT_SERVING)
    assert check(target) == (False, f"{target}: NOT_SERVING")
    assert main(["--target", target]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err


def test_follows_the_overall_status_not_a_named_service(health_server):
    servicer, target = health_server
    servicer.set("", NOT_SERVING)
    servicer.set("inspector.v1.Inspector", SERVING)
    assert main(["--target", target]) == 1
    assert main(["--target", target, "--service", "inspector.v1.Inspector"]) == 0
    servicer.set("", SERVING)
    assert main(["--target", target]) == 0


def test_unknown_service_exits_1(health_server):
    _, target = health_server
    serving, what = check(target, service="no.such.Service")
    assert not serving and "NOT_FOUND" in what


def test_unreachable_port_exits_1_quickly():
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    serving, what = check(target)
    assert not serving and "UNAVAILABLE" in what
    assert time.monotonic() - started < 3.5
    assert main(["--target", target]) == 1


def test_no_answer_within_the_timeout_exits_1():
    release = threading.Event()

    class Stuck(health.HealthServicer):
        def Check(self, request, context):  # noqa: N802 - gRPC's name
            release.wait(10)
            return super().Check(request, context)

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(Stuck(), server)
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        started = time.monotonic()
        serving, what = check(target, timeout=0.5)
        assert not serving and "DEADLINE_EXCEEDED" in what
        assert time.monotonic() - started < 3
    finally:
        release.set()
        server.stop(0).wait()


def test_module_entry_point(health_server):
    """What the Dockerfile's HEALTHCHECK runs: ``python -m inspector.healthcheck --target HOST:PORT``."""
    servicer, target = health_server
    cmd = [sys.executable, "-m", "inspector.healthcheck", "--target", target]
    servicer.set("", SERVING)
    assert subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    servicer.set("", NOT_SERVING)
    assert subprocess.run(cmd, capture_output=True, timeout=30).returncode == 1


class _Failed(grpc.RpcError):
    """A failed call as gRPC gives it: code, details and the trailer of ``status``."""

    def __init__(self, status: grpc.Status) -> None:
        self.status = status

    def code(self) -> grpc.StatusCode:
        return self.status.code

    def details(self) -> str:
        return self.status.details

    def trailing_metadata(self):
        return self.status.trailing_metadata


def test_describe_shows_the_error_models_reason():
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, "frame 'a.png': 99 bytes; the limit is 10", "too_large")
    assert describe_rpc_error(_Failed(status)) == \
        "INVALID_ARGUMENT (too_large): frame 'a.png': 99 bytes; the limit is 10"
    same = rich_status(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token", "unauthenticated")
    assert describe_rpc_error(_Failed(same)) == "UNAUTHENTICATED: missing bearer token"  # the reason adds nothing


def test_describe_without_details_is_code_and_message():
    plain = grpc.Status()
    plain.code, plain.details, plain.trailing_metadata = grpc.StatusCode.UNAVAILABLE, "Socket closed", ()
    assert describe_rpc_error(_Failed(plain)) == "UNAVAILABLE: Socket closed"


def test_a_refused_check_names_its_reason():
    class Refusing(health.HealthServicer):
        def Check(self, request, context):  # noqa: N802 - gRPC's name
            context.abort_with_status(rich_status(grpc.StatusCode.UNAVAILABLE, "draining", "shutting_down"))

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(Refusing(), server)
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        assert check(target) == (False, f"{target}: UNAVAILABLE (shutting_down): draining")
    finally:
        server.stop(0).wait()
