"""SHA256SUMS manifests: written in sha256sum's format, and every kind of difference from them named."""

import shutil
import subprocess
from pathlib import Path

import pytest

from inspector.artifacts import manifest
from inspector.artifacts.manifest import MANIFEST_FILE


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    sealed = tmp_path / "v1"
    (sealed / "sub").mkdir(parents=True)
    (sealed / "a.json").write_text('{"x": 1}')
    (sealed / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (sealed / "export").mkdir()
    (sealed / "export" / "model.onnx").write_bytes(b"onnx")
    manifest.write(sealed, skip=("export",))
    return sealed


def test_write_lists_every_file_but_skipped_folders_and_leaves_no_temporary(folder: Path) -> None:
    assert sorted(manifest.read(folder)) == ["a.json", "sub/b.bin"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1"]
    assert manifest.differences(folder, manifest.read(folder), skip=("export",)) == []


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils' sha256sum")
def test_sha256sum_checks_the_manifest(folder: Path) -> None:
    done = subprocess.run(["sha256sum", "-c", MANIFEST_FILE], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a.json: OK" in done.stdout and "sub/b.bin: OK" in done.stdout


def _changes(folder: Path) -> list[str]:
    return manifest.differences(folder, manifest.read(folder), skip=("export",))


def test_a_modified_file_is_named(folder: Path) -> None:
    (folder / "a.json").write_text('{"x": 2}')
    (folder / "export" / "model.onnx").write_bytes(b"changed")  # skipped: not reported
    assert len(_changes(folder)) == 1
    assert _changes(folder)[0].startswith(f"{folder / 'a.json'}: sha256 ") and "was modified" in _changes(folder)[0]


def test_missing_added_and_linked_files_are_named(folder: Path, tmp_path: Path) -> None:
    (folder / "sub" / "b.bin").unlink()
    (folder / "notes.txt").write_text("added")
    (tmp_path / "outside").mkdir()
    (folder / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert _changes(folder) == [
        f"{folder / 'link'}: a symbolic link (a sealed folder holds plain files only)",
        f"{folder / 'notes.txt'}: not listed in {MANIFEST_FILE} (added after the folder was sealed)",
        f"{folder / 'sub/b.bin'}: listed in {MANIFEST_FILE} but missing",
    ]


def test_a_listed_path_outside_the_folder_is_never_read(folder: Path) -> None:
    (folder.parent / "secret").write_text("outside")  # read, it would be reported as modified, not missing
    listed = manifest.read(folder) | {"../secret": "0" * 64, str(folder.parent / "secret"): "0" * 64}
    assert sorted(manifest.differences(folder, listed, skip=("export",))) == sorted([
        f"{folder / '../secret'}: listed in {MANIFEST_FILE} but missing",
        f"{folder.parent / 'secret'}: listed in {MANIFEST_FILE} but missing",
    ])


def test_read_refuses_a_malformed_line_and_reports_no_manifest(folder: Path, tmp_path: Path) -> None:
    assert manifest.read(tmp_path) is None
    (folder / MANIFEST_FILE).write_text("0" * 64 + "  a.json\nnot a checksum line\n")
    with pytest.raises(ValueError, match=rf"{MANIFEST_FILE}:2: not a '<sha256>  <file>' line"):
        manifest.read(folder)


def test_write_refuses_a_symbolic_link(folder: Path) -> None:
    (folder / "alias.json").symlink_to(folder / "a.json")
    with pytest.raises(ValueError, match="alias.json is a symbolic link"):
        manifest.write(folder)
