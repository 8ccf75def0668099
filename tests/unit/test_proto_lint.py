"""protos/ passes `buf lint` (buf.yaml) and changes inspector.v1 only additively: `buf breaking` against the image of
the released API (protos/released/inspector-v1.binpb) finds nothing, and does find a renumbered field."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
RELEASED = ROOT / "protos" / "released" / "inspector-v1.binpb"
PROTO = Path("protos") / "inspector" / "v1" / "inspector.proto"


@pytest.fixture(scope="module")
def buf() -> str:
    """The buf of `make proto-tools` (pinned, in build/buf), else one on PATH."""
    local = ROOT / "build" / "buf" / "node_modules" / ".bin" / "buf"
    found = str(local) if os.access(local, os.X_OK) else shutil.which("buf")
    if found is None:
        pytest.fail("buf is not installed: run `make proto-tools` (it installs buf from npm into build/buf)")
    return found


def run(buf: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([buf, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_lint_passes(buf):
    done = run(buf, "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_breaking_change_against_the_released_api(buf):
    released = descriptor_pb2.FileDescriptorSet.FromString(RELEASED.read_bytes())  # a buf image is one
    assert str(PROTO.relative_to("protos")) in {f.name for f in released.file}
    done = run(buf, "breaking", "--against", str(RELEASED))
    assert done.returncode == 0, done.stdout + done.stderr


def test_breaking_check_catches_a_renumbered_field(buf, tmp_path):
    shutil.copytree(ROOT / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns("released"))
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    proto = tmp_path / PROTO
    text = proto.read_text()
    assert text.count("optional float mask = 3;") == 1
    proto.write_text(text.replace("optional float mask = 3;", "optional float mask = 30;"))
    done = run(buf, "breaking", "--against", str(RELEASED), cwd=tmp_path)
    assert done.returncode != 0, "buf breaking accepted a renumbered field"
    assert 'field "3" with name "mask"' in done.stdout + done.stderr
