"""Admin.SetThresholds refuses every bad threshold (INVALID_ARGUMENT, a message naming the field) and then serves
exactly what it served before: a NaN per-class threshold must not quietly turn rejected cracks into accepts."""

import math

import grpc
import pytest

from inspector.config import ServeConfig
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

TIMEOUT = 30.0  # s, for calls that should answer at once (a safety net, not a timing assertion)
NAN, INF = math.nan, math.inf
PROBABILITIES = ("reject", "review", "mask", "mask_weight")  # the proto's thresholds in [0, 1]


def _cases() -> list:
    """(thresholds sent, the start of the refusal's message) for each field and bad value."""
    cases = []
    for value in (NAN, -0.1, 1.5, INF):
        cases += [pytest.param(pb.Thresholds(**{field: value}), f"{field} must be a number in [0, 1], got ",
                               id=f"{field}={value}") for field in PROBABILITIES]
        cases.append(pytest.param(pb.Thresholds(per_class={"crack": value}),
                                  "per_class['crack'] must be a number in [0, 1], got ", id=f"per_class={value}"))
    cases += [pytest.param(pb.Thresholds(per_class={c: NAN for c in ("crack", "scratch", "spot")}),
                           "per_class['", id="per_class-all-nan")]
    cases += [pytest.param(pb.Thresholds(anomaly=value), "anomaly threshold must be >= 0 and finite, got ",
                           id=f"anomaly={value}") for value in (NAN, -0.1, INF)]
    cases += [pytest.param(pb.Thresholds(per_class={name: 0.25}), f"per_class['{name}'] is not a defect class",
                           id=f"per_class-{name}") for name in ("dent", "good")]
    return cases


@pytest.fixture(scope="module")
def served(tiny_bundle):
    """An in-process service of the tiny bundle, and a channel to it."""
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", workers=2, metrics_port=None,
                      watch_seconds=0.0, grace_seconds=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        assert running.loaded.wait(60), "the model did not load"
        yield channel
    finally:
        channel.close()
        running.stop(grace=1)


@pytest.fixture(scope="module")
def crack_request(demo_data) -> pb.InspectRequest:
    data = (demo_data / "images" / "crack" / "crack_0000.png").read_bytes()
    return pb.InspectRequest(data=data, encoding=pb.PNG, frame_id="crack")


@pytest.mark.parametrize(("thresholds", "message"), _cases())
def test_bad_thresholds_are_refused_and_change_nothing(served, crack_request, thresholds, message):
    stub, admin = pb_grpc.InspectorStub(served), pb_grpc.AdminStub(served)
    before = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds
    verdict = stub.Inspect(crack_request, timeout=TIMEOUT).verdict

    with pytest.raises(grpc.RpcError) as err:
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=thresholds), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(message), err.value.details()

    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds == before
    after = stub.Inspect(crack_request, timeout=TIMEOUT)
    assert (after.verdict, after.thresholds) == (verdict, before)


def test_good_thresholds_are_still_taken(served, crack_request):
    stub, admin = pb_grpc.InspectorStub(served), pb_grpc.AdminStub(served)
    wanted = pb.Thresholds(reject=1.0, review=0.0, mask=0.0, per_class={"crack": 0.0}, anomaly=1e9)
    echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=wanted), timeout=TIMEOUT)
    assert (echoed.reject, echoed.review, echoed.mask, dict(echoed.per_class)) == (1.0, 0.0, 0.0, {"crack": 0.0})
    response = stub.Inspect(crack_request, timeout=TIMEOUT)
    assert response.thresholds == echoed
    # a crack meets its own threshold, 0; any other part reaches the review threshold, 0, and not the reject one
    assert response.verdict == (pb.REJECT if response.defect_class == "crack" else pb.REVIEW)
