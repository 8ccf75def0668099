"""Transport security and bearer tokens for the service.

- TLS on the gRPC port from certificate and key files; with a client CA, mutual TLS (clients must present a
  certificate signed by it).
- Bearer tokens (``authorization: Bearer <token>`` metadata), read from a file or an environment variable, never from
  the command line: always required for Admin calls when an admin token is configured, and for inference when an
  inference token is. Compared in constant time. Missing: UNAUTHENTICATED; wrong: PERMISSION_DENIED.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import grpc

from inspector.errors import MissingPathError, UsageError
from inspector.service.interceptor import refusal

ADMIN_PREFIX = "/inspector.v1.Admin/"
INFERENCE_PREFIXES = ("/inspector.v1.Inspector/", "/inference.GRPCInferenceService/")


def read_secret(file: str | None, env: str) -> str | None:
    """A token from ``file`` (stripped) or else the environment variable ``env``; None if neither is set.

    Raises:
        MissingPathError: ``file`` cannot be read.
        UsageError: ``file`` is empty or holds only whitespace.
    """
    if file:
        try:
            token = Path(file).read_text().strip()
        except OSError as err:
            raise MissingPathError(f"cannot read token file {file}: {err.strerror}") from err
        if not token:
            raise UsageError(f"token file {file} is empty")
        return token
    return os.environ.get(env) or None


def server_credentials(cert: str, key: str, client_ca: str | None = None) -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca``, clients must present a certificate it signed (mutual TLS).

    Raises:
        MissingPathError: One of the files cannot be read.
    """
    def read(path: str, what: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            raise MissingPathError(f"cannot read TLS {what} {path}: {err.strerror}") from err

    root = read(client_ca, "client CA") if client_ca else None
    return grpc.ssl_server_credentials([(read(key, "key"), read(cert, "certificate"))], root_certificates=root,
                                       require_client_auth=root is not None)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token of Admin calls (and of inference calls when an inference token is set). A method the
    server does not have is left to gRPC, which answers UNIMPLEMENTED, token or not."""

    def __init__(self, admin_token: str | None, inference_token: str | None = None) -> None:
        self.rules = [(ADMIN_PREFIX, admin_token), (INFERENCE_PREFIXES, inference_token)]

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        expected = next((token for prefix, token in self.rules if method.startswith(prefix)), None)
        if handler is None or expected is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if not given.startswith("Bearer "):
            return refusal(handler, grpc.StatusCode.UNAUTHENTICATED,
                           "missing bearer token (metadata 'authorization: Bearer <token>')", "unauthenticated")
        if not hmac.compare_digest(given[len("Bearer "):].encode(), expected.encode()):
            return refusal(handler, grpc.StatusCode.PERMISSION_DENIED, "wrong token for this method",
                           "permission_denied")
        return handler
