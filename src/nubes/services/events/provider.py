"""Amazon EventBridge: buses, rules, targets, PutEvents, archives and replays,
connections and API destinations, schedule rules — delivered durably.

The provider is assembled from one mixin per area (each its own module); this
class only starts and stops the background work:

* the delivery worker draining ``events.deliveries`` (see ``delivery``),
* the schedule-rule timer runner (see ``schedules``),
* unfinished replays, resumed,
* the ``events:put`` topic on the in-process bus, through which other nubes
  services (S3, Step Functions, Scheduler) put events on a bus.
"""

from __future__ import annotations

from collections.abc import Callable

from nubes.services.events import store as st
from nubes.services.events.buses import BusOperations
from nubes.services.events.delivery import DeliveryWorker
from nubes.services.events.ingest import PUT_TOPIC
from nubes.services.events.rules import RuleOperations
from nubes.services.events.schedules import ScheduleOperations


class EventsProvider(ScheduleOperations, RuleOperations, BusOperations):
    """Every implemented EventBridge operation."""

    #: first retry delay of a failed delivery (doubles each attempt)
    retry_base_seconds = 1.0

    worker: DeliveryWorker | None = None
    _unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self.worker = DeliveryWorker(
            self.app, st.DELIVERIES, self.deliver, self.dead_letter,
            retry_base=self.retry_base_seconds,
        )  # fmt: skip
        self.app.spawn(self.worker.run(), name="events-deliveries")
        self.deliver_now = self.worker.deliver_now
        self.app.spawn(self.run_schedules(), name="events-schedules")
        self.app.spawn(self.resume_replays(), name="events-replays")
        self.app.spawn(self.sweep_archives(), name="events-archive-retention")
        self._unsubscribe = self.app.bus.subscribe(PUT_TOPIC, self.on_put_topic)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
