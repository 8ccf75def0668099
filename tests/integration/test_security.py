"""TLS, mutual TLS and bearer tokens, with certificates made at test time."""

import datetime
import ipaddress

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inspector.client import InspectorClient
from inspector.config import ServeConfig
from inspector.healthcheck import TLSFiles, check
from inspector.healthcheck import main as healthcheck_main
from inspector.service.security import read_secret
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

TIMEOUT = 20


def _cert(name: str, issuer=None, issuer_key=None, ca: bool = False, server: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def _write(path, cert, key=None):
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _cert("test CA", ca=True)
    server, server_key = _cert("localhost", ca, ca_key, server=True)
    client, client_key = _cert("camera-1", ca, ca_key)
    other_ca, other_key = _cert("other CA", ca=True)
    stranger, stranger_key = _cert("stranger", other_ca, other_key)
    return {"ca": _write(d / "ca", ca)[0], "server": _write(d / "server", server, server_key),
            "client": _write(d / "client", client, client_key), "stranger": _write(d / "stranger", stranger, stranger_key)}


@pytest.fixture(scope="module")
def frame(demo_data):
    return pb.InspectRequest(data=(demo_data / "images" / "good" / "good_0000.png").read_bytes(), encoding=pb.PNG,
                             frame_id="f")


def _serve(tiny_bundle, **cfg):
    config = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                         grace_seconds=1.0, **cfg)
    running = start_server(config, bundle=tiny_bundle)
    assert running.loaded.wait(60)
    return running


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_tls_refuses_plaintext(tiny_bundle, pki, frame):
    cert, key = pki["server"]
    running = _serve(tiny_bundle, tls_cert=cert, tls_key=key)
    try:
        target = f"localhost:{running.port}"
        with InspectorClient(target, tls_ca=pki["ca"]) as client:
            assert client.inspect(frame, timeout=TIMEOUT).frame_id == "f"
        with InspectorClient(target) as plain:
            assert _code(lambda: plain.inspect(frame, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(grace=0)


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(tiny_bundle, pki, frame):
    cert, key = pki["server"]
    running = _serve(tiny_bundle, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"])
    try:
        target = f"localhost:{running.port}"
        client_cert, client_key = pki["client"]
        with InspectorClient(target, tls_ca=pki["ca"], tls_cert=client_cert, tls_key=client_key) as client:
            assert client.inspect(frame, timeout=TIMEOUT).frame_id == "f"
        with InspectorClient(target, tls_ca=pki["ca"]) as anonymous:
            assert _code(lambda: anonymous.inspect(frame, timeout=5)) == grpc.StatusCode.UNAVAILABLE
        s_cert, s_key = pki["stranger"]
        with InspectorClient(target, tls_ca=pki["ca"], tls_cert=s_cert, tls_key=s_key) as stranger:
            assert _code(lambda: stranger.inspect(frame, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(grace=0)


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_the_health_port_speaks_the_main_ports_tls(tiny_bundle, pki):
    cert, key = pki["server"]
    running = _serve(tiny_bundle, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"], health_port=0)
    try:
        target = f"localhost:{running.health_port}"
        with grpc.insecure_channel(target) as plain:
            assert _code(lambda: _health(plain)) == grpc.StatusCode.UNAVAILABLE
        client_cert, client_key = pki["client"]
        assert check(target, tls=TLSFiles(pki["ca"], client_cert, client_key)) == (True, f"{target}: SERVING")
        assert healthcheck_main(["--target", target, "--tls-ca", pki["ca"], "--tls-cert", client_cert,
                                 "--tls-key", client_key]) == 0
    finally:
        running.stop(grace=0)


def test_a_plaintext_health_port_beside_tls_only_when_asked(tiny_bundle, pki, frame):
    """Kubernetes' gRPC probes cannot speak TLS: --health-plaintext opens the health port (and only it) to them."""
    cert, key = pki["server"]
    running = _serve(tiny_bundle, tls_cert=cert, tls_key=key, health_port=0, health_plaintext=True)
    try:
        assert check(f"127.0.0.1:{running.health_port}") == (True, f"127.0.0.1:{running.health_port}: SERVING")
        with InspectorClient(f"localhost:{running.port}") as plain:  # the main port stays TLS-only
            assert _code(lambda: plain.inspect(frame, timeout=5)) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:  # health and nothing else
            assert _code(lambda: pb_grpc.InspectorStub(channel).Inspect(frame, timeout=5)) == \
                grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop(grace=0)


def test_an_unknown_method_is_unimplemented_token_or_not(tiny_bundle, tmp_path):
    (tmp_path / "admin").write_text("s3cret-admin\n")
    running = _serve(tiny_bundle, admin_token_file=str(tmp_path / "admin"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for method in ("/inspector.v1.Admin/DropAllModels", "/inspector.v1.Inspector/Nope", "/no.Such/Method"):
                call = channel.unary_unary(method, request_serializer=lambda m: b"", response_deserializer=bytes)
                with pytest.raises(grpc.RpcError) as err:
                    call(None, timeout=5)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (method, err.value.details())
    finally:
        running.stop(grace=0)


def test_admin_and_inference_tokens(tiny_bundle, tmp_path, frame, monkeypatch):
    (tmp_path / "admin").write_text("s3cret-admin\n")
    monkeypatch.setenv("INSPECTOR_TOKEN", "line-token")
    running = _serve(tiny_bundle, admin_token_file=str(tmp_path / "admin"))
    try:
        target = f"127.0.0.1:{running.port}"
        request = pb.ListModelsRequest()
        with InspectorClient(target) as none:
            assert _code(lambda: none.admin.ListModels(request, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
            assert _code(lambda: none.inspect(frame, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
            assert _code(lambda: list(none.stream([frame], timeout=5))) == grpc.StatusCode.UNAUTHENTICATED
        with InspectorClient(target, token="line-token") as line:
            assert line.inspect(frame, timeout=TIMEOUT).frame_id == "f"
            assert [r.frame_id for r in line.stream([frame], timeout=TIMEOUT)] == ["f"]
            wrong = [("authorization", "Bearer line-token")]
            assert _code(lambda: line.admin.ListModels(request, timeout=5, metadata=wrong)) == \
                grpc.StatusCode.PERMISSION_DENIED
            admin = [("authorization", "Bearer s3cret-admin")]
            assert line.admin.ListModels(request, timeout=TIMEOUT, metadata=admin).serving == "tiny/v1"
    finally:
        running.stop(grace=0)


def test_read_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("X_TOKEN", "from-env")
    assert read_secret(None, "X_TOKEN") == "from-env"
    (tmp_path / "t").write_text("  from-file \n")
    assert read_secret(str(tmp_path / "t"), "X_TOKEN") == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_secret(str(tmp_path / "empty"), "X_TOKEN")
    with pytest.raises(FileNotFoundError, match="cannot read token file"):
        read_secret(str(tmp_path / "missing"), "X_TOKEN")
    monkeypatch.delenv("X_TOKEN")
    assert read_secret(None, "X_TOKEN") is None
