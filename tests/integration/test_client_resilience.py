"""A client that copes: one readable line when the service cannot be reached, waiting for a service that starts
late, retries of UNAVAILABLE, a broken stream that names exactly the frames left unanswered, and the error model's
reason in the message. Fake services are small in-process gRPC servers with generic handlers on the real methods."""

import contextlib
import datetime
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inspector.cli import main
from inspector.cli.client import CONNECT_TIMEOUT_S
from inspector.client import CallFailed, InspectorClient, StreamBroken, Unreachable
from inspector.client.connection import DEFAULT_CONNECT_TIMEOUT_S
from inspector.client.errors import connection_failure
from inspector.errors import ServiceError
from inspector.status_details import rich_status
from inspector.v1 import inspector_pb2 as pb

from service_support import TIMEOUT, png, wait_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unary(handler):
    return grpc.unary_unary_rpc_method_handler(handler, request_deserializer=pb.InspectRequest.FromString,
                                               response_serializer=pb.InspectResponse.SerializeToString)


def streaming(handler):
    return grpc.stream_stream_rpc_method_handler(handler, request_deserializer=pb.InspectRequest.FromString,
                                                 response_serializer=pb.InspectResponse.SerializeToString)


@contextlib.contextmanager
def fake_service(port: int = 0, credentials: grpc.ServerCredentials | None = None, **methods):
    """A server of ``inspector.v1.Inspector`` with only ``methods`` (name -> handler); yields its target."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("inspector.v1.Inspector", methods)])
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    assert bound, f"cannot listen on {address}"
    server.start()
    try:
        yield f"127.0.0.1:{bound}"
    finally:
        server.stop(0).wait()


def request(frame_id: str, data: bytes = b"\x89PNG") -> pb.InspectRequest:
    return pb.InspectRequest(data=data, encoding=pb.PNG, frame_id=frame_id)


def run_cli(*argv: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "inspector", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    return done, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "debug_error_string" not in stderr and "Traceback" not in stderr and "_MultiThreadedRendezvous" not in stderr
    return lines[0]


# ---------------------------------------------------------------- cannot reach

def test_cli_against_a_closed_port_is_one_line_within_its_deadline(tmp_path):
    image = tmp_path / "part.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    port = free_port()
    done, took = run_cli("client", "--target", f"127.0.0.1:{port}", "--connect-timeout", "2", str(image))
    assert done.returncode == 1 and done.stdout == ""  # a ServiceError: one line and exit 1 (inspector.cli.app)
    assert one_line(done.stderr) == f"inspector client: error: cannot reach 127.0.0.1:{port}: connection refused"
    assert 2.0 <= took < 10.0  # waited for the connection (the service may be starting), then gave up


def _self_signed(tmp_path: Path, name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key")


def test_tls_failures_are_one_line_at_once(tmp_path):
    """Waiting would not fix a TLS mismatch: reported at once, well within the connect timeout."""
    cert, key = _self_signed(tmp_path, "server")
    other_ca, _ = _self_signed(tmp_path, "other")
    image = tmp_path / "part.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    credentials = grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])
    with fake_service(credentials=credentials) as target:
        plain, took_plain = run_cli("client", "--target", target, str(image))
        wrong_ca, took_wrong = run_cli("client", "--target", target, "--tls-ca", other_ca, str(image))
    assert plain.returncode == 1 and wrong_ca.returncode == 1
    assert one_line(plain.stderr).startswith(
        f"inspector client: error: cannot reach {target}: the connection closed while it was set up")
    assert one_line(wrong_ca.stderr) == (f"inspector client: error: cannot reach {target}: TLS handshake failed: "
                                         "its certificate is not signed by the CA given (--tls-ca)")
    assert max(took_plain, took_wrong) < CONNECT_TIMEOUT_S


@pytest.mark.parametrize("details, sentence", [
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: "
     "Connection refused", "connection refused"),
    ("errors resolving nosuch.invalid:50051: [field:hostname lookup error:address lookup failed for "
     "nosuch.invalid:50051: Domain name not found]", "unknown host name"),
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Tls handshake failed "
     "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: "
     "Invalid certificate verification context: OK", "TLS handshake failed: the service does not speak TLS "
                                                      "(connect without --tls-ca)"),
    ("the service is shutting down", None),
])
def test_connection_failures_in_words(details, sentence):
    assert connection_failure(details) == sentence


def test_the_cli_default_is_the_clients():
    assert CONNECT_TIMEOUT_S == DEFAULT_CONNECT_TIMEOUT_S


# ---------------------------------------------------------------- waiting and retrying

def test_a_call_waits_for_a_service_that_starts_late():
    port = free_port()
    answered: list = []
    with InspectorClient(f"127.0.0.1:{port}", connect_timeout=TIMEOUT) as client:
        refused = threading.Event()
        client.channel.subscribe(lambda s: s is grpc.ChannelConnectivity.TRANSIENT_FAILURE and refused.set(),
                                 try_to_connect=True)
        call = threading.Thread(target=lambda: answered.append(client.inspect(request("late"), timeout=TIMEOUT)))
        call.start()
        assert refused.wait(TIMEOUT), "the client never tried the closed port"
        with fake_service(port, Inspect=unary(lambda r, c: pb.InspectResponse(frame_id=r.frame_id))):
            call.join(TIMEOUT)
    assert [r.frame_id for r in answered] == ["late"]


@pytest.mark.parametrize("size", [16, 1 << 20], ids=["small", "1MiB"])  # above gRPC's default 256 KiB retry buffer
def test_unavailable_is_retried(size):
    attempts: list[str] = []

    def inspect(req, context):
        attempts.append(dict(context.invocation_metadata()).get("grpc-previous-rpc-attempts", "0"))
        if len(attempts) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return pb.InspectResponse(frame_id=req.frame_id)

    with fake_service(Inspect=unary(inspect)) as target, InspectorClient(target) as client:
        assert client.inspect(request("r", b"x" * size), timeout=TIMEOUT).frame_id == "r"
    assert attempts == ["0", "1"]  # the second attempt is gRPC's retry of the same call


def test_a_refusal_is_not_retried_and_says_its_reason():
    attempts = []
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, "frame 'a.png': frame payload is 99 bytes; the limit is 10",
                         "too_large", {"frame_id": "a.png"})

    def inspect(req, context):
        attempts.append(req.frame_id)
        context.abort_with_status(status)

    with fake_service(Inspect=unary(inspect)) as target, InspectorClient(target) as client:
        with pytest.raises(CallFailed) as err:
            client.inspect(request("a.png"), timeout=TIMEOUT)
    assert str(err.value) == f"{target}: INVALID_ARGUMENT (too_large): frame 'a.png': frame payload is 99 bytes; " \
                             "the limit is 10"
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and isinstance(err.value, grpc.RpcError)
    assert attempts == ["a.png"]


def test_the_services_reason_reaches_the_message(served):
    """Against the real service: an undecodable frame is refused INVALID_ARGUMENT with the reason ``undecodable``."""
    target = f"127.0.0.1:{served[0].port}"
    with InspectorClient(target) as client:
        with pytest.raises(CallFailed) as err:
            client.inspect(request("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(err.value).startswith(f"{target}: INVALID_ARGUMENT (undecodable): frame 'broken.png': ")


# ---------------------------------------------------------------- a stream that breaks

def answer_then_break(read: int, answer: int):
    """A stream handler that reads ``read`` frames, answers the first ``answer``, then ends UNAVAILABLE."""

    def handler(requests, context):
        frames = [next(requests) for _ in range(read)]
        for frame in frames[:answer]:
            yield pb.InspectResponse(frame_id=frame.frame_id, verdict=pb.ACCEPT)
        context.abort(grpc.StatusCode.UNAVAILABLE, "the service is shutting down")

    return streaming(handler)


def test_a_broken_stream_names_exactly_the_unanswered_frames():
    ids = ["a", "b", "c", "d", "e"]
    answered = []
    with fake_service(InspectStream=answer_then_break(read=5, answer=2)) as target, InspectorClient(target) as client:
        with pytest.raises(StreamBroken) as err:
            for response in client.inspect_frames(request(i) for i in ids):
                answered.append(response.frame_id)
    assert answered == ["a", "b"]
    assert err.value.unanswered == ["c", "d", "e"]
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and isinstance(err.value, ServiceError)
    assert str(err.value) == f"{target}: UNAVAILABLE: the service is shutting down; 3 frames unanswered: c, d, e"


def test_no_frame_is_lost_when_a_stream_breaks_midway():
    """Frames taken but unanswered plus the frames never taken are exactly the frames after the answered ones."""
    ids = [f"f{i}" for i in range(40)]
    taken = []

    def frames():
        for i in ids:
            taken.append(i)
            yield request(i)

    source = frames()
    with fake_service(InspectStream=answer_then_break(read=5, answer=2)) as target, InspectorClient(target) as client:
        with pytest.raises(StreamBroken) as err:
            list(client.inspect_frames(source))
    # gRPC takes frames ahead of the answers (how many depends on timing); one it was taking as the stream broke
    # joins ``unanswered`` once taken: poll for that
    wait_until(lambda: err.value.unanswered == taken[2:], timeout=TIMEOUT)
    assert len(taken) >= 5  # the server read five
    assert err.value.unanswered + [r.frame_id for r in source] == ids[2:]


def test_cli_prints_the_answers_then_one_line_with_the_unanswered(tmp_path, capsys):
    paths = []
    for name in ("a", "b", "c", "d"):
        paths.append(tmp_path / f"{name}.png")
        paths[-1].write_bytes(png(np.zeros((8, 8), np.uint8)))
    with fake_service(InspectStream=answer_then_break(read=4, answer=2)) as target:
        assert main(["client", "--target", target, *map(str, paths)]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line)["frame_id"] for line in captured.out.splitlines()] == [str(p) for p in paths[:2]]
    assert one_line(captured.err) == (f"inspector client: error: {target}: UNAVAILABLE: the service is shutting "
                                      f"down; 2 frames unanswered: {paths[2]}, {paths[3]}")


def test_unreachable_is_still_an_rpc_error_with_its_code():
    """Callers that catch grpc.RpcError and switch on code() keep working."""
    with InspectorClient(f"127.0.0.1:{free_port()}", connect_timeout=0.5) as client:
        with pytest.raises(Unreachable) as err:
            client.inspect(request("x"), timeout=TIMEOUT)
    assert isinstance(err.value, grpc.RpcError) and err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert str(err.value).endswith(": connection refused")


def test_a_peer_that_never_answers_is_no_answer_within_the_connect_timeout():
    """A port that accepts TCP but never speaks HTTP/2: the connection never opens and never fails."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody reads
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with InspectorClient(target, connect_timeout=1) as client, pytest.raises(Unreachable) as err:
            client.model_info(timeout=TIMEOUT)
        took = time.monotonic() - started
    assert str(err.value) == f"cannot reach {target}: no answer within 1 s"
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1.0 <= took < 5.0
