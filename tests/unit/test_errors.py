"""The error hierarchy: one base, a UserError branch that the domain errors derive from, a module importing nothing."""

import json
import subprocess
import sys

import pytest

from inspector.artifacts.bundle import BundleError
from inspector.errors import DataError, InspectorError, MissingPathError, ServiceError, UsageError, UserError
from inspector.model import WeightsNotFoundError
from inspector.imaging.preprocess import FrameError
from inspector.artifacts.store import StoreError
from inspector.service.batcher import BatcherClosed, DeadlineExpired
from inspector.service.refusal import Rejected


@pytest.mark.parametrize("cls, builtin", [
    (BundleError, ValueError), (StoreError, ValueError), (FrameError, ValueError), (UsageError, ValueError),
    (DataError, ValueError), (WeightsNotFoundError, FileNotFoundError), (MissingPathError, FileNotFoundError),
    (ServiceError, Exception),
])
def test_domain_errors_are_user_errors_and_keep_their_builtin_base(cls, builtin):
    assert issubclass(cls, UserError) and issubclass(cls, InspectorError)
    assert issubclass(cls, builtin)  # callers that catch the built-in go on working


def test_user_errors_are_a_branch_not_every_error():
    assert issubclass(UserError, InspectorError)
    for builtin in (ValueError, FileNotFoundError, OSError, RuntimeError):
        assert not issubclass(builtin, UserError)


@pytest.mark.parametrize("cls", [Rejected, DeadlineExpired, BatcherClosed])
def test_service_refusals_are_inspector_errors_but_not_the_users(cls):
    """The service raises them on purpose and maps them to gRPC codes; the person running inspector fixes nothing."""
    assert issubclass(cls, InspectorError) and not issubclass(cls, UserError)


def test_a_message_only_path_error_has_no_errno():
    err = MissingPathError("model bundle /x does not exist")
    assert str(err) == "model bundle /x does not exist" and err.errno is None and err.filename is None


def test_frame_error_keeps_its_reason():
    err = FrameError("too_large", "frame is 9000 px wide")
    assert err.reason == "too_large" and str(err) == "frame is 9000 px wide" and isinstance(err, UserError)


def test_errors_module_imports_nothing():
    code = ("import sys; before = set(sys.modules); import inspector.errors; "
            "new = sorted(set(sys.modules) - before); import json; print(json.dumps(new))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == ["inspector", "inspector.errors"]
