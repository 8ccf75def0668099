"""What the service benchmarks share: ``inspector serve`` in a process of its own, its figures from /proc and
/metrics, and a description of the machine for bench/RESULTS.md.

The server binds ``--grpc-port 0`` and ``--metrics-port 0``; the ports are read from its log line
``gRPC listening on HOST:PORT ...; metrics on http://HOST:PORT/metrics``, so benchmarks never race for a port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from _results import RESULTS, invocation, machine, utc_now, write_results  # noqa: F401 - benches import them here
from inspector.v1 import inspector_pb2 as pb

DATA = Path(__file__).resolve().parents[2] / "shared/data/magnetic-tile"  # real frames, read where they lie
ENCODINGS = {".jpg": pb.JPEG, ".jpeg": pb.JPEG, ".png": pb.PNG, ".bmp": pb.BMP}
LISTENING = re.compile(r"gRPC listening on (\S+):(\d+) .*metrics on http://(\S+):(\w+)/metrics")
READINESS = "inspector.v1.Inspector"  # health service that is SERVING once the model is warm and not saturated


@dataclass(frozen=True)
class Frame:
    data: bytes
    encoding: int  # pb.Encoding


@dataclass
class Server:
    """A running ``inspector serve`` process."""

    proc: subprocess.Popen
    target: str  # host:port of the gRPC server
    metrics_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status_kib(self, field: str = "VmRSS") -> int:
        """A memory figure of /proc/PID/status (``VmRSS`` now, ``VmHWM`` the peak), KiB."""
        return status_kib(self.pid, field)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """The server's /metrics now, as ``{'name{label="value",...}': value}`` (labels sorted)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains), then waits; kills it after ``timeout`` s. Returns the exit status; the log
        is removed after a clean exit and kept (its path printed) otherwise."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.returncode == 0:
            self.log_path.unlink(missing_ok=True)
        else:
            print(f"the server exited with status {self.proc.returncode}; its log: {self.log_path}", file=sys.stderr)
        return self.proc.returncode


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` of /proc/PID/status in KiB (0 when absent)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _wait_for_port(proc: subprocess.Popen, log_path: Path, deadline: float) -> tuple[str, str]:
    """The gRPC target and metrics URL from the server's log, once it has written them."""
    while time.monotonic() < deadline:
        match = LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return f"{match.group(1)}:{match.group(2)}", f"http://{match.group(3)}:{match.group(4)}/metrics"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"the server did not say where it listens; its log ({log_path}) ends:\n"
                       + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:]))


def _wait_until_serving(server: Server, deadline: float) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and server.proc.poll() is None:
            try:
                request = health_pb2.HealthCheckRequest(service=READINESS)
                if health.Check(request, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"the server did not become SERVING; its log ends:\n{server.log_tail()}")


def start_server(source: list[str], options: list[str] = (), device: str = "cpu",
                 timeout: float = 240.0) -> Server:
    """``inspector serve`` on 127.0.0.1 with ``source`` (``--model B`` or ``--store S --name N``) and ``options``,
    in its own process (OMP_WAIT_POLICY=PASSIVE), returned once its readiness is SERVING.

    Its log goes to a temporary file (``Server.log_path``), read for the ports and shown when something fails.
    """
    log_path = Path(tempfile.mkstemp(prefix="inspector-serve-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "inspector", "serve", *source, "--host", "127.0.0.1", "--grpc-port", "0",
           "--metrics-port", "0", "--device", device, *options]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"})
    deadline = time.monotonic() + timeout
    try:
        target, metrics_url = _wait_for_port(proc, log_path, deadline)
        server = Server(proc, target, metrics_url, log_path)
        _wait_until_serving(server, deadline)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return server


def _spread(paths: list[Path], n: int) -> list[Frame]:
    """``n`` of ``paths`` (sorted by class folder), evenly spaced so that every class is among them."""
    return [Frame(p.read_bytes(), ENCODINGS[p.suffix.lower()]) for p in paths[:: max(1, len(paths) // n)][:n]]


def load_frames(data: Path, n: int) -> tuple[list[Frame], str]:
    """``n`` images spread over the class folders ``data/images/<class>/*.jpg`` (read where they lie), else as
    many generated by ``inspector demo-data``; and a line that says which."""
    paths = sorted((data / "images").glob("*/*.jpg"))
    if paths:
        frames = _spread(paths, n)
        return frames, f"{len(frames)} of the {len(paths)} JPEGs of {data}, evenly spaced over its classes"
    with tempfile.TemporaryDirectory(prefix="bench-frames-") as out:
        subprocess.run([sys.executable, "-m", "inspector", "demo-data", "--out", out, "--per-class",
                        str(max(1, n // 4)), "--size", "256"], check=True, capture_output=True)
        frames = _spread(sorted(Path(out, "images").glob("*/*.png")), n)
    return frames, f"{len(frames)} PNGs from `inspector demo-data --size 256` ({data} not found)"


def busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (every state but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
