"""The committed gRPC modules are exactly what protos/ generates (run `make proto` after editing the proto)."""

from pathlib import Path

import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = {"v1": "inspector", "oip": "inference"}  # package folder -> proto file, under protos/inspector/


@pytest.mark.parametrize("folder", sorted(PROTOS))
def test_generated_modules_match_the_proto(tmp_path, folder):
    stem = PROTOS[folder]
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            str(ROOT / "protos" / "inspector" / folder / f"{stem}.proto")]
    assert protoc.main(args) == 0
    for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
        fresh = (tmp_path / "inspector" / folder / name).read_text()
        committed = (ROOT / "inspector" / folder / name).read_text()
        if fresh != committed:
            pytest.fail(f"inspector/{folder}/{name} is stale: run `make proto`")


def test_the_open_inference_protocol_keeps_its_wire_names():
    """Clients of other servers (tritonclient, KServe's) call these exact names and field numbers."""
    from inspector.oip import inference_pb2 as oip

    assert oip.DESCRIPTOR.package == "inference"
    service = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert set(service.methods_by_name) == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                            "ModelMetadata", "ModelInfer", "ModelStreamInfer"}
    request = oip.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert {n: request[n].number for n in ("model_name", "model_version", "id", "parameters", "inputs", "outputs",
                                           "raw_input_contents")} == dict(
        model_name=1, model_version=2, id=3, parameters=4, inputs=5, outputs=6, raw_input_contents=7)
    assert oip.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number == 6
    assert oip.InferTensorContents.DESCRIPTOR.fields_by_name["bytes_contents"].number == 8


def test_the_api_names_users_depend_on():
    from inspector.v1 import inspector_pb2 as pb

    services = pb.DESCRIPTOR.services_by_name
    assert set(services["Inspector"].methods_by_name) == {"Inspect", "InspectStream", "GetModelInfo"}
    assert set(services["Admin"].methods_by_name) == {"ListModels", "ActivateVersion", "Rollback", "SetThresholds"}
    assert pb.DESCRIPTOR.package == "inspector.v1"
    assert [pb.Encoding.Name(v) for v in pb.Encoding.values()][1:] == [
        "JPEG", "PNG", "BMP", "RAW_GRAY8", "RAW_BGR8", "RAW_RGB8"]
    assert {pb.Verdict.Name(v) for v in pb.Verdict.values()} >= {"ACCEPT", "REJECT", "REVIEW"}
