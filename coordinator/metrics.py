"""The coordinator's own Prometheus figures, beside the HTTP ones every service has
(common/web/metrics.py): the POPs' messages and heartbeats, the POPs' health, the webhook
outbox and its deliveries, and the state store's transactions.

The outbox's size and the POPs' health are read when a scrape asks; the rest is counted
as it happens. Labels name message types, POPs (from the config), health states and
outcomes: sets that the config and the code bound, never handles.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from coordinator.pop_choice import Health
from coordinator.pop_registry import PopRegistry
from coordinator.state import StateStore

# Seconds. A webhook delivery: a receiver's answer, up to webhook_delivery.timeout.
_DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A state store transaction: SQLite's group commit, one fsync of the WAL at its heart, or
# one PostgreSQL transaction, its round trips included.
# Applying one POP event batch: a transaction, then the bucket completes of its uploads.
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                        1.0, 2.5)


class CoordinatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry (a part made alone, in a test): counted, never shown.
        registry = registry if registry is not None else CollectorRegistry()
        self._messages = Counter(
            "cin_rpc_messages", "Internal API messages from POPs, by type and outcome "
                                "(ok, or the error code answered).", ["type", "outcome"],
            registry=registry)
        self._heartbeats = Counter(
            "cin_pop_heartbeats", "Heartbeats received, by POP.", ["pop"], registry=registry)
        self._pop_health = Gauge(
            "cin_pop_health", "1 for the health state each POP is in, 0 for the others.",
            ["pop", "state"], registry=registry)
        self._outbox = Gauge(
            "cin_webhook_outbox", "Webhook deliveries in the outbox, by state (pending: "
                                  "still to make; abandoned: given up on).", ["state"],
            registry=registry)
        self._deliveries = Counter(
            "cin_webhook_deliveries", "Webhook delivery attempts, by outcome (delivered, "
                                      "retry, abandoned).", ["outcome"], registry=registry)
        self._delivery_latency = Histogram(
            "cin_webhook_delivery_duration_seconds", "Time a webhook receiver took to answer "
                                                     "(or fail to).",
            buckets=_DELIVERY_BUCKETS, registry=registry)
        self._transactions = Histogram(
            "cin_state_transaction_duration_seconds", "Time of each state store write "
                                                      "transaction (SQLite: a group commit), "
                                                      "commit included, by engine.",
            ["engine"], buckets=_TRANSACTION_BUCKETS, registry=registry)

        self._leases = Counter(
            "cin_handle_leases", "Blocks of handles leased, by POP.", ["pop"],
            registry=registry)
        self._leased_handles = Counter(
            "cin_leased_handles", "Handles leased in those blocks, by POP.", ["pop"],
            registry=registry)
        self._pop_events = Counter(
            "cin_pop_events", "Events from POPs' batches, by kind (or malformed) and outcome "
                              "(applied, repeated: applied before, refused).",
            ["kind", "outcome"], registry=registry)
        self._batch_latency = Histogram(
            "cin_pop_batch_duration_seconds", "Time to apply one POP event batch, the "
                                              "completes of its finished uploads included.",
            buckets=_BATCH_BUCKETS, registry=registry)

    def message(self, msg_type: str, outcome: str) -> None:
        self._messages.labels(msg_type, outcome).inc()

    def heartbeat(self, pop: str) -> None:
        self._heartbeats.labels(pop).inc()

    def lease_granted(self, pop: str, size: int) -> None:
        self._leases.labels(pop).inc()
        self._leased_handles.labels(pop).inc(size)

    def pop_event(self, kind: str, outcome: str) -> None:
        """`kind`: an event kind of common/protocol/pop_events.py, or "malformed"."""
        self._pop_events.labels(kind, outcome).inc()

    def pop_batch(self, seconds: float) -> None:
        self._batch_latency.observe(seconds)

    def delivery(self, outcome: str, seconds: float | None = None) -> None:
        self._deliveries.labels(outcome).inc()
        if seconds is not None:
            self._delivery_latency.observe(seconds)

    def transactions(self, engine: str) -> Callable[[float], None]:
        """What the state store of `engine` tells the seconds of each transaction (SQLite
        calls it on its writer's thread: prometheus-client's figures are thread-safe)."""
        return self._transactions.labels(engine).observe

    async def read(self, state: StateStore, pops: PopRegistry) -> None:
        """The figures a scrape reads rather than counts."""
        counts = await state.outbox_counts()
        for name in ("pending", "abandoned"):
            self._outbox.labels(name).set(counts.get(name, 0))
        for status in pops.status():
            for health in Health:
                self._pop_health.labels(status.pop.name, health.value).set(
                    1 if status.health is health else 0)
