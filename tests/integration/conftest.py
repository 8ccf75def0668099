"""Fixtures of the integration tests: Prometheus' promtool (checks configs and rules) and server (the end-to-end
scrape). ``make test`` installs them (Debian's ``prometheus`` package) where it can; the tests never install."""

import shutil

import pytest


def _prometheus_tool(name: str) -> str:
    """The path of ``name`` (``promtool`` or ``prometheus``): from PATH, else /usr/bin, where Debian's package puts it.

    Fails (never skips) when it is missing, so a machine without it cannot pass the checks silently.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found:
        return found
    pytest.fail(f"{name} is not installed; the deploy and Prometheus tests need it. `make test` installs it where "
                f"apt-get runs as root; elsewhere run `sudo apt-get install prometheus` (Debian/Ubuntu: the package "
                f"carries promtool and prometheus) or put Prometheus' {name} on PATH.", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' checker of configs and rules."""
    return _prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_server_binary() -> str:
    """The Prometheus server, for the end-to-end scrape test."""
    return _prometheus_tool("prometheus")
