"""Capacity: the stream ceiling and the saturation signal behind readiness."""

import pytest

from inspector.service.health import Capacity
from inspector.service.refusal import Kind, Rejected


def test_the_stream_after_the_ceiling_is_refused_and_a_closed_one_frees_its_place():
    capacity = Capacity(max_streams=2, frame_load=lambda: 0.0)
    capacity.open_stream()
    capacity.open_stream()
    with pytest.raises(Rejected) as err:
        capacity.open_stream()
    assert err.value.kind is Kind.OVERLOADED and "--max-streams 2" in err.value.message
    assert capacity.used() == 1.0 and capacity.saturated()
    capacity.close_stream()
    capacity.open_stream()
    assert capacity.streams == 2


def test_saturation_has_hysteresis_and_follows_overload_refusals():
    load = {"frames": 0.9}
    capacity = Capacity(max_streams=100, frame_load=lambda: load["frames"], release=0.8)
    assert not capacity.saturated()
    capacity.note_refusal()  # a frame was refused as overload
    assert capacity.saturated()
    assert capacity.saturated(), "stays saturated until the load falls below the release level"
    load["frames"] = 0.7
    assert not capacity.saturated()
    load["frames"] = 1.0
    assert capacity.saturated()
