"""Fixtures of the integration tests: promtool, Prometheus' checker of configs and rules."""

import os
import shutil
import subprocess

import pytest


def _apt_install_prometheus() -> str:
    """``apt-get update``, ``apt-get install prometheus`` (Debian's package carries promtool); returns what failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"`{' '.join(cmd)}` could not run: {err}"
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}"
    return ""


def _prometheus_tool(name: str) -> str:
    """The path of ``name`` (``promtool`` or ``prometheus``): from PATH, else installed with apt-get (Debian's
    ``prometheus`` package carries both).

    Fails (does not skip) when it cannot be had, so a machine without it cannot pass the checks silently.
    Installing the package on a machine with systemd also enables its Prometheus service; CI and containers have
    none running.
    """
    found = shutil.which(name)
    if found:
        return found
    why = ""
    if shutil.which("apt-get") is None:
        why = "apt-get is not available"
    elif hasattr(os, "geteuid") and os.geteuid() != 0:
        why = "installing it needs root (apt-get install -y prometheus)"
    else:
        why = _apt_install_prometheus()
    found = shutil.which(name) or (os.path.exists(f"/usr/bin/{name}") and f"/usr/bin/{name}")
    if found:
        return found
    pytest.fail(f"{name} is needed and could not be installed: {why or 'not on PATH'}. "
                f"Install Prometheus (Debian/Ubuntu: apt-get install prometheus) and put {name} on PATH.",
                pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' checker of configs and rules."""
    return _prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_server_binary() -> str:
    """The Prometheus server, for the end-to-end scrape test."""
    return _prometheus_tool("prometheus")
