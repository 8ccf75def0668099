"""The error model of refusals outside the frame corpus (tests/integration/test_malformed.py covers every bad frame):
admin input, tokens, draining, capacity; and server reflection under both of its names."""

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2 as reflection

from inspector.oip import inference_pb2 as oip
from inspector.oip import inference_pb2_grpc as oip_grpc
from inspector.status_details import DOMAIN, details_of
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import Servers, wait_until

TIMEOUT = 30.0  # s; a safety net, not a timing assertion
REFLECTION = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def channel(make_store, module_servers):
    return module_servers.channel(module_servers.start(make_store()))


def _reflect(channel: grpc.Channel, service: str, request: reflection.ServerReflectionRequest):
    call = channel.stream_stream(f"/{service}/ServerReflectionInfo",
                                 request_serializer=reflection.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection.ServerReflectionResponse.FromString)
    (response,) = list(call(iter([request]), timeout=TIMEOUT))
    return response


@pytest.mark.parametrize("service", REFLECTION)
def test_reflection_answers_under_both_names(channel, service):
    listed = _reflect(channel, service, reflection.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert names >= {"inspector.v1.Inspector", "inspector.v1.Admin", "inference.GRPCInferenceService",
                     "grpc.health.v1.Health", *REFLECTION}
    for symbol in ("inference.GRPCInferenceService", "grpc.reflection.v1.ServerReflection"):
        found = _reflect(channel, service, reflection.ServerReflectionRequest(file_containing_symbol=symbol))
        assert found.HasField("file_descriptor_response"), (symbol, found.error_response)


def test_bad_admin_input_names_the_field(channel):
    admin = pb_grpc.AdminStub(channel)
    err = _refusal(lambda: admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(review=1.5)),
                                               timeout=TIMEOUT))
    details = details_of(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (details.reason, details.domain) == ("bad_thresholds", DOMAIN)
    assert list(details.fields) == ["thresholds.review"]
    err = _refusal(lambda: admin.ActivateVersion(pb.ActivateVersionRequest(version="v9"), timeout=TIMEOUT))
    details = details_of(err)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "activation_failed" and details.metadata["serving"] == "line/v1"
    assert list(details.fields) == ["version"] and "v9" in details.fields["version"]


def test_refusals_before_the_handler_carry_a_reason(make_store, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_TOKEN", "line-token")
    with Servers() as servers:
        running = servers.start(make_store())
        channel = servers.channel(running)
        infer = oip_grpc.GRPCInferenceServiceStub(channel)
        request = oip.ModelInferRequest(model_name="line")
        assert details_of(_refusal(lambda: infer.ModelInfer(request, timeout=TIMEOUT))).reason == "unauthenticated"
        wrong = [("authorization", "Bearer nope")]
        err = _refusal(lambda: infer.ModelInfer(request, timeout=TIMEOUT, metadata=wrong))
        assert (err.code(), details_of(err).reason) == (grpc.StatusCode.PERMISSION_DENIED, "permission_denied")
        token = [("authorization", "Bearer line-token")]
        assert infer.ServerReady(oip.ServerReadyRequest(), timeout=TIMEOUT, metadata=token).ready
        running.servicer.draining = True  # as stop() sets it first; readiness follows within a health period
        wait_until(lambda: not infer.ServerReady(oip.ServerReadyRequest(), timeout=TIMEOUT, metadata=token).ready)
        assert not infer.ServerLive(oip.ServerLiveRequest(), timeout=TIMEOUT, metadata=token).live
        err = _refusal(lambda: infer.ModelInfer(request, timeout=TIMEOUT, metadata=token))
        assert (err.code(), details_of(err).reason) == (grpc.StatusCode.UNAVAILABLE, "shutting_down")
        running.servicer.draining = False
