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


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of ``promtool``: from PATH, else installed with apt-get (Debian's ``prometheus`` package).

    Fails (does not skip) when it cannot be had, so a machine without it cannot pass the deploy checks silently.
    Installing the package on a machine with systemd also enables its Prometheus service; CI and containers have
    none running.
    """
    found = shutil.which("promtool")
    if found:
        return found
    why = ""
    if shutil.which("apt-get") is None:
        why = "apt-get is not available"
    elif hasattr(os, "geteuid") and os.geteuid() != 0:
        why = "installing it needs root (apt-get install -y prometheus)"
    else:
        why = _apt_install_prometheus()
    found = shutil.which("promtool") or (os.path.exists("/usr/bin/promtool") and "/usr/bin/promtool")
    if found:
        return found
    pytest.fail(f"promtool is needed to check deploy/prometheus/ and could not be installed: {why or 'not on PATH'}. "
                "Install Prometheus' promtool (Debian/Ubuntu: apt-get install prometheus) and put it on PATH.",
                pytrace=False)
