"""What the service can take, and what grpc.health.v1 says about it.

Two signals with two audiences:

- **Liveness** (service ``""`` and ``inspector.v1.Admin``): SERVING once a model is loaded and warm, NOT_SERVING while
  loading and while draining. Saturation never touches it, so a busy replica is not restarted.
- **Readiness** (service ``inspector.v1.Inspector``): as liveness, and also NOT_SERVING while the replica is
  saturated, so Kubernetes routes new calls to another replica. It returns to SERVING once the load falls below
  ``release`` (hysteresis: a replica at the edge does not flap).

The load is :meth:`Capacity.used`: the larger of the share of ``--max-streams`` open and the share of the frame budget
in flight; the same figure is exported as ``inspector_capacity_used_ratio`` for the HPA and the dashboard.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from inspector.service.refusal import Kind, Rejected

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
READINESS_SERVICE = "inspector.v1.Inspector"
LIVENESS_SERVICES = ("", "inspector.v1.Admin")


class Capacity:
    """Open streams against ``max_streams``, and the load that decides readiness.

    Args:
        max_streams: Streams open at once at most; one more is refused with RESOURCE_EXHAUSTED.
        frame_load: The share of the frame budget in use, in [0, 1] (``Pipeline.load``).
        release: Load below which a saturated replica is ready again.
    """

    def __init__(self, max_streams: int, frame_load: Callable[[], float], release: float = 0.8) -> None:
        self.max_streams = max_streams
        self.frame_load = frame_load
        self.release = release
        self.streams = 0
        self._refused = False  # a frame or stream was refused for capacity since the last look
        self._saturated = False
        self._lock = threading.Lock()

    def open_stream(self) -> None:
        """Counts a new stream.

        Raises:
            Rejected: OVERLOADED when ``max_streams`` are already open.
        """
        with self._lock:
            if self.streams >= self.max_streams:
                self._refused = True
                raise Rejected(Kind.OVERLOADED, "too_many_streams",
                               f"{self.streams} streams are open, the most this replica takes (--max-streams "
                               f"{self.max_streams}); close an idle one or connect to another replica")
            self.streams += 1

    def close_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def note_refusal(self) -> None:
        """A frame was refused as overload: the replica is saturated until the load falls below ``release``."""
        self._refused = True

    def used(self) -> float:
        """Share of the replica's capacity in use, in [0, 1]."""
        return max(min(1.0, self.streams / self.max_streams), self.frame_load())

    def saturated(self) -> bool:
        """Whether the replica should take no new work; call it periodically (it clears the refusal mark)."""
        with self._lock:
            refused, self._refused = self._refused, False
        used = self.used()
        if refused or used >= 1.0:
            self._saturated = True
        elif used < self.release:
            self._saturated = False
        return self._saturated


class Health:
    """Keeps grpc.health.v1 (an asyncio servicer, on the server's loop) in line with the service's state.

    Args:
        capacity: The load that decides readiness.
        live: Whether a model is loaded and warm and the service is not draining.
        period: Seconds between looks at the state.
    """

    def __init__(self, capacity: Capacity, live: Callable[[], bool], period: float = 0.25) -> None:
        self.servicer = health_aio.HealthServicer()
        self.capacity = capacity
        self.live = live
        self.period = period
        self._statuses: dict[str, int] = {}

    def statuses(self) -> dict[str, int]:
        live = self.live()
        status = {name: SERVING if live else NOT_SERVING for name in LIVENESS_SERVICES}
        status[READINESS_SERVICE] = SERVING if live and not self.capacity.saturated() else NOT_SERVING
        return status

    def ready(self) -> bool:
        """Whether the replica takes new frames, as last published (readiness: warm, not draining, not saturated)."""
        return self._statuses.get(READINESS_SERVICE) == SERVING

    async def refresh(self) -> None:
        """Publishes the statuses that changed."""
        for name, status in self.statuses().items():
            if self._statuses.get(name) != status:
                await self.servicer.set(name, status)
                self._statuses[name] = status

    async def run(self) -> None:
        """Refreshes every ``period`` seconds until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.period)
