"""The committed gRPC modules are exactly what protos/ generates (run `make proto` after editing the proto)."""

from pathlib import Path

import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ["inspector_pb2.py", "inspector_pb2.pyi", "inspector_pb2_grpc.py"]


def test_generated_modules_match_the_proto(tmp_path):
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            str(ROOT / "protos" / "inspector" / "v1" / "inspector.proto")]
    assert protoc.main(args) == 0
    for name in GENERATED:
        fresh = (tmp_path / "inspector" / "v1" / name).read_text()
        committed = (ROOT / "inspector" / "v1" / name).read_text()
        if fresh != committed:
            pytest.fail(f"inspector/v1/{name} is stale: run `make proto`")


def test_the_api_names_users_depend_on():
    from inspector.v1 import inspector_pb2 as pb

    services = pb.DESCRIPTOR.services_by_name
    assert set(services["Inspector"].methods_by_name) == {"Inspect", "InspectStream", "GetModelInfo"}
    assert set(services["Admin"].methods_by_name) == {"ListModels", "ActivateVersion", "Rollback", "SetThresholds"}
    assert pb.DESCRIPTOR.package == "inspector.v1"
    assert [pb.Encoding.Name(v) for v in pb.Encoding.values()][1:] == [
        "JPEG", "PNG", "BMP", "RAW_GRAY8", "RAW_BGR8", "RAW_RGB8"]
    assert {pb.Verdict.Name(v) for v in pb.Verdict.values()} >= {"ACCEPT", "REJECT", "REVIEW"}
