"""Container health probe: ``python -m inspector.healthcheck --target 127.0.0.1:50051``.

Asks the service's ``grpc.health.v1.Health/Check`` for the overall status (service ``""``) and exits 0 only when it is
SERVING (over TLS with ``--tls-ca``, as the health port speaks when the service has TLS); 1 when it is anything else (NOT_SERVING while the model loads or the service drains), when the call fails
(nothing listening, the service unknown) or when no answer comes within the timeout (3 s). Imports gRPC (and the
status details' protobufs) only, so it starts fast enough to run every few seconds beside the service.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inspector.client.errors import describe_rpc_error  # CODE (reason): details; gRPC only, no OpenCV

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 3.0


class TLSFiles(NamedTuple):
    ca: str | None  # PEM CA of the server certificate: speak TLS
    cert: str | None = None  # client certificate, for mutual TLS
    key: str | None = None


def _channel(target: str, tls: TLSFiles | None) -> grpc.Channel:
    if tls is None or not tls.ca:
        return grpc.insecure_channel(target)
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(read(tls.ca), read(tls.key), read(tls.cert)))


def check(target: str = DEFAULT_TARGET, service: str = "", timeout: float = DEFAULT_TIMEOUT_S,
          tls: TLSFiles | None = None) -> tuple[bool, str]:
    """One health check.

    Returns:
        Whether ``service`` on ``target`` is SERVING, and a one-line description of what was found.
    """
    with _channel(target, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            return False, f"{target}: {describe_rpc_error(err)}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspector.healthcheck",
                                     description="Exit 0 when the service's gRPC health is SERVING, else 1.")
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"HOST:PORT (default {DEFAULT_TARGET})")
    parser.add_argument("--service", default="", help="service name to check (default: the overall status)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--tls-ca", help="PEM CA of the server certificate: check over TLS")
    parser.add_argument("--tls-cert", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="client key (mutual TLS)")
    args = parser.parse_args(argv)
    serving, what = check(args.target, args.service, args.timeout, TLSFiles(args.tls_ca, args.tls_cert, args.tls_key))
    print(what, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
