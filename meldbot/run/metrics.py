"""Prometheus metrics: counts and latencies only; no label ever holds personal data or content."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from meldbot.core.domain import Status

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per app (no module-level state); gauges are read from the database at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.signals_received = Counter("meldbot_signals_received", "Signals submitted", ["meldpunt"], registry=r)
        self.turns = Counter("meldbot_turns", "Messages handled", ["platform", "outcome"], registry=r)
        self.turn_seconds = Histogram("meldbot_turn_seconds", "Time to handle one message", ["platform"],
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.delivered = Counter("meldbot_outbox_delivered", "Outbox messages delivered", ["platform"], registry=r)
        self.delivery_failures = Counter("meldbot_outbox_failures", "Failed delivery attempts", ["platform"], registry=r)
        self.in_doubt = Counter("meldbot_outbox_in_doubt", "Message parts sent again because their sender stopped "
                                "during the platform call (may have been shown twice)", ["platform"], registry=r)
        self.open_signals = Gauge("meldbot_signals_open", "Open signals", ["meldpunt", "status"], registry=r)
        self.backlog = Gauge("meldbot_outbox_backlog", "Outbox messages not yet delivered", registry=r)
        self.parked = Gauge("meldbot_outbox_parked", "Outbox messages parked (need the administrator)", registry=r)
        self.parked_by_kind = Gauge("meldbot_outbox_parked_by_kind", "Parked outbox messages per kind of message",
                                    ["kind"], registry=r)
        self.matrix_undecryptable = Counter(
            "meldbot_matrix_undecryptable", "Matrix messages whose key never came (the sender was asked to resend)",
            registry=r)
        self.matrix_decrypted_late = Counter(
            "meldbot_matrix_decrypted_late", "Matrix messages decrypted after their key arrived late", registry=r)
        self.library_log_records = Gauge(
            "meldbot_library_log_records", "Records of libraries whose messages are not logged (they can hold ids)",
            ["logger", "level"], registry=r)
        self.overdue = Gauge("meldbot_reminders_overdue", "Reminder series currently overdue", ["meldpunt"], registry=r)

    async def refresh(self, app) -> None:
        from meldbot.service.reminders import due_now
        from meldbot.service.services import work_calendar

        now = app.clock.now()
        async with app.uow() as uow:
            stats = await uow.outbox.stats()
            self.backlog.set(stats["pending"])
            self.parked.set(stats["parked"])
            self.parked_by_kind.clear()
            for kind, count in (await uow.outbox.parked_by_kind()).items():
                self.parked_by_kind.labels(kind).set(count)
            for meldpunt in app.config.meldpunten:
                signals = await uow.signals.reminder_candidates(meldpunt.id)
                for status in (Status.RECEIVED, Status.IN_PROGRESS, Status.FORWARDED):
                    self.open_signals.labels(meldpunt.id, status.value).set(
                        sum(1 for s in signals if s.status is status))
                cal, settings = work_calendar(app.config, meldpunt.id), app.config.reminders_for(meldpunt.id)
                self.overdue.labels(meldpunt.id).set(sum(len(due_now(s, settings, cal, now)) for s in signals))

    def matrix_counts_hook(self):
        """A callback for the Matrix adapter's counts: the counters follow them."""
        last = {"unreadable": 0, "late": 0}

        def hook(counts) -> None:
            for name, counter in (("unreadable", self.matrix_undecryptable), ("late", self.matrix_decrypted_late)):
                value = getattr(counts, name)
                if value > last[name]:
                    counter.inc(value - last[name])
                    last[name] = value

        return hook

    def render(self) -> bytes:
        from meldbot.core.logs import library_counts

        for (logger, level), count in list(library_counts.items()):
            self.library_log_records.labels(logger, level).set(count)
        return generate_latest(self.registry)
