"""The command line's edges: what importing it loads, user errors in one line (exit 2), bugs with their traceback,
flag values refused by argparse, --version, and wrong paths refused before torch is imported."""

import errno
import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

import inspector.cli.app as cli
import inspector.cli.models as models_command
from inspector.cli import main
from inspector.errors import ServiceError, UsageError

HEAVY = ("torch", "cv2", "grpc", "matplotlib", "segmentation_models_pytorch", "timm", "onnx", "onnxruntime")


def run_in_fresh_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env or dict(os.environ))


def main_in_fresh_python(argv: list[str]) -> tuple[int, list[str], str]:
    """Runs ``main(argv)`` in a new interpreter; returns its exit status, the heavy modules it imported, stderr."""
    code = (f"import sys\nfrom inspector.cli import main\ntry:\n    rc = main({argv!r})\nexcept SystemExit as e:\n"
            f"    rc = e.code\nprint('MODULES', [m for m in {HEAVY!r} if m in sys.modules])\nsys.exit(rc)\n")
    done = run_in_fresh_python(code)
    [modules] = [line for line in done.stdout.splitlines() if line.startswith("MODULES")]
    return done.returncode, eval(modules.removeprefix("MODULES ")), done.stderr


def test_importing_the_cli_loads_no_heavy_library_and_sets_nothing():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = run_in_fresh_python("import os, sys\nimport inspector.cli\n"
                               f"print([m for m in {HEAVY!r} if m in sys.modules], 'OMP_WAIT_POLICY' in os.environ)",
                               env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] False"


def test_python_m_inspector_and_help_answer_without_torch():
    done = subprocess.run([sys.executable, "-m", "inspector", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("train", "evaluate", "predict", "serve", "client", "models", "audit"):
        assert command in done.stdout
    rc, modules, _ = main_in_fresh_python(["--help"])
    assert rc == 0 and modules == []


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"inspector {version('inspector')}\n"


@pytest.mark.parametrize("args", [
    ["evaluate", "--model", "{missing}", "--data", "{missing}", "--report", "{tmp}/r"],
    ["evaluate", "--model", "{tmp}", "--data", "{missing}", "--report", "{tmp}/r"],
    ["calibrate", "--model", "{missing}", "--data", "{tmp}"],
    ["compare", "--models", "{tmp}", "{missing}", "--data", "{tmp}"],
    ["export", "--model", "{missing}"],
    ["predict", "--model", "{missing}", "{tmp}"],
    ["predict", "--model", "{tmp}", "{missing}"],
    ["train", "--data", "{missing}", "--out", "{tmp}/m"],
    ["train", "--data", "{tmp}", "--out", "{tmp}/m", "--init", "{missing}"],
    ["serve", "--model", "{missing}"],
    ["serve", "--store", "{missing}"],
    ["models", "list", "--store", "{missing}"],
    ["audit", "export", "--audit", "{missing}", "--out", "{tmp}/a"],
])
def test_a_wrong_path_is_one_line_exit_2_before_torch_loads(args, tmp_path):
    missing = str(tmp_path / "nowhere")
    argv = [a.format(missing=missing, tmp=tmp_path) for a in args]
    rc, modules, err = main_in_fresh_python(argv)
    assert rc == 2
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"inspector {argv[0]}: error: ") and "nowhere" in err
    assert "torch" not in modules and "matplotlib" not in modules


@pytest.mark.parametrize("args, words", [
    (["serve", "--grpc-port", "70000"], "--grpc-port: must be >= 0 and <= 65535, got 70000"),
    (["serve", "--max-batch", "0"], "--max-batch: must be >= 1"),
    (["serve", "--audit-sample-accept", "nan"], "--audit-sample-accept: must be >= 0.0 and <= 1.0"),
    (["serve", "--grace-seconds", "inf"], "--grace-seconds: must be >= 0.0, got inf"),
    (["train", "--data", "d", "--out", "o", "--image-size", "100"],
     "--image-size: input size must be a multiple of 32"),
    (["train", "--data", "d", "--out", "o", "--epochs-frozen", "two"], "--epochs-frozen: 'two' is not an integer"),
    (["calibrate", "--model", "m", "--data", "d", "--target-escape-rate", "1.5"], "--target-escape-rate: must be"),
    (["predict", "--model", "m", "x.png", "--device", "gpu"], "--device: 'gpu': choose auto, cpu, cuda or cuda:N"),
    (["predict", "--model", "m", "x.png", "--tile-overlap", "1"], "--tile-overlap: must be >= 0.0 and < 1.0"),
    (["client", "--target", "t", "x.png", "--timeout", "0"], "--timeout: must be > 0.0"),
    (["demo-data", "--out", "o", "--size", "8"], "--size: must be >= 64, got 8"),
])
def test_a_bad_flag_value_is_refused_by_argparse(args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"inspector {args[0]}: error: argument {words}" in err


def test_flags_that_need_each_other_are_a_user_error(capsys):
    assert main(["serve", "--tls-cert", "cert.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["predict", "--model", ".", ".", "--roi", "0", "0", "0", "5"]) == 2
    assert "--roi: width and height must be > 0, got 0x5" in capsys.readouterr().err


def fail_with(monkeypatch, err: BaseException) -> None:
    """Makes ``inspector models`` raise ``err``."""
    def command(args):
        raise err
    monkeypatch.setattr(models_command, "run", command)


def test_a_user_error_is_one_line_without_traceback(monkeypatch, capsys):
    fail_with(monkeypatch, UsageError("line one\n  line two"))
    assert main(["models", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "inspector models: error: line one line two\n" and captured.out == ""


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("a bug's own ValueError"),
                                 KeyError("classes"), RuntimeError("device lost")])
def test_a_bug_propagates_with_its_traceback(monkeypatch, bug):
    fail_with(monkeypatch, bug)
    with pytest.raises(type(bug)):
        main(["models", "list"])


def test_a_bug_shows_its_traceback_from_the_console_entry():
    code = ("import sys, inspector.cli.app as c, inspector.cli.models as m\ndef bug(args):\n    return 1 / 0\n"
            "m.run = bug\nsys.exit(c.main(['models', 'list']))")
    done = run_in_fresh_python(code)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ZeroDivisionError" in done.stderr


def test_an_os_error_is_the_users_only_on_a_path_they_gave(monkeypatch, tmp_path, capsys):
    store = tmp_path / "store"
    fail_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", str(store / "line" / "ACTIVE")))
    assert main(["models", "list", "--store", str(store)]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    fail_with(monkeypatch, PermissionError(errno.EACCES, "Permission denied", str(store)))
    assert main(["models", "list", "--store", str(store)]) == 2
    # the OS refusing a file nobody named on the command line is inspector's own bug
    fail_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", "/opt/inspector/data.json"))
    with pytest.raises(FileNotFoundError):
        main(["models", "list", "--store", str(store)])
    # an empty argument (--camera-id "") must not make every file under the working directory the user's
    fail_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", "ACTIVE"))
    with pytest.raises(FileNotFoundError):
        main(["models", "list", "--store", str(store)])
    # an OSError that one of inspector's own checks raised with only a message says what to do
    fail_with(monkeypatch, OSError("cannot listen on 0.0.0.0:50051 for gRPC"))
    assert main(["models", "list", "--store", str(store)]) == 2
    assert "cannot listen on 0.0.0.0:50051" in capsys.readouterr().err


def test_cuda_without_cuda_is_a_user_error(monkeypatch):
    import torch

    from inspector.model.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_graphs_without_cuda_is_a_user_error(monkeypatch, tiny_bundle, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["serve", "--model", str(tiny_bundle), "--cuda-graphs", "--grpc-port", "0"]) == 2
    assert "--cuda-graphs needs a CUDA device; --device auto is cpu here" in capsys.readouterr().err


def test_client_against_no_service_is_one_line(tmp_path, capsys):
    image = tmp_path / "part.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")  # never decoded: the call fails first
    assert main(["client", "--target", "127.0.0.1:1", str(image), "--timeout", "20", "--connect-timeout", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "inspector client: error: cannot reach 127.0.0.1:1: connection refused\n"
    assert issubclass(ServiceError, Exception)


def test_models_commands_round_trip_without_torch(tmp_path):
    (tmp_path / "line" / "v1").mkdir(parents=True)
    (tmp_path / "line" / "v2").mkdir()
    rc, modules, err = main_in_fresh_python(["models", "promote", "--store", str(tmp_path), "--name", "line", "v2"])
    assert rc == 0 and (tmp_path / "line" / "ACTIVE").read_text().strip() == "v2", err
    assert "torch" not in modules
    rc, _, err = main_in_fresh_python(["models", "rollback", "--store", str(tmp_path), "--name", "nope"])
    assert rc == 2 and "has no model 'nope'" in err


def test_every_string_argument_counts_as_given(tmp_path):
    args = cli.build_parser().parse_args(["predict", "--model", str(tmp_path / "m"), str(tmp_path / "a.png")])
    assert cli.named_on_command_line(str(tmp_path / "m" / "bundle.json"), args)
    assert cli.named_on_command_line(str(tmp_path / "a.png"), args)
    assert not cli.named_on_command_line(str(tmp_path / "other.png"), args)
    assert json.dumps(vars(args), default=str)  # plain values
