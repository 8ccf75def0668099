"""Server reflection under both names clients use: ``grpc.reflection.v1`` (tried first by current grpcurl and
reflection clients) and ``grpc.reflection.v1alpha``.

grpcio-reflection implements v1alpha only. The two protocols are the same messages under another package, identical
on the wire, so one servicer answers both, and the v1 descriptors are derived from the v1alpha ones so that clients
can also describe the v1 service itself.
"""

from __future__ import annotations

from typing import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc

ALPHA_PACKAGE, V1_PACKAGE = "grpc.reflection.v1alpha", "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
ALPHA_SERVICE = f"{ALPHA_PACKAGE}.ServerReflection"


def _register_v1_descriptors(pool: descriptor_pool.DescriptorPool) -> None:
    """Adds ``grpc/reflection/v1/reflection.proto`` to ``pool`` (once), made from the v1alpha file."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    alpha.DESCRIPTOR.CopyToProto(proto)
    text = text_format.MessageToString(proto).replace(ALPHA_PACKAGE, V1_PACKAGE)
    v1 = text_format.Parse(text, descriptor_pb2.FileDescriptorProto())
    v1.name = V1_FILE
    pool.Add(v1)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection of ``service_names`` (and of both reflection services) on ``server``."""
    pool = descriptor_pool.Default()
    _register_v1_descriptors(pool)
    servicer = reflection_aio.ReflectionServicer((*service_names, V1_SERVICE, ALPHA_SERVICE), pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(servicer.ServerReflectionInfo,
                                               request_deserializer=alpha.ServerReflectionRequest.FromString,
                                               response_serializer=alpha.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1})])
