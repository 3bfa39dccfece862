"""What this daemon process has done since it started (polls, requests, sends), counted for /metrics."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from notifier.pipeline.cycle import CircuitBreaker, CycleStats
from notifier.pipeline.outbox import DrainResult

# Outcomes of one shipment's poll, as /metrics labels them.
POLL_OUTCOMES = (
    "changed",
    "unchanged",
    "failed",
    "unrecognized",
    "error",
    "lease_lost",
    "skipped_open_circuit",
    "handed_back",
)
CYCLE_OUTCOMES = ("good", "failing", "error")
REQUEST_KINDS = ("list", "detail", "wording")
EMAIL_OUTCOMES = ("sent", "retried", "failed", "deferred", "suppressed", "held")


def cycle_failing(stats: CycleStats | None, breaker: CircuitBreaker) -> bool:
    """Whether a poll cycle counts as failing (the heartbeat's /fail, /metrics' "failing").

    Failing: the cycle raised (`stats` None), the circuit breaker is open after it (Japan Post
    failed `circuit_failures` requests in a row, or was open all along), a page was not
    recognised (the kill switch), or a poll failed for a reason of its own. One failed request
    among good ones is not: the breaker counts runs of failures, and that is what matters.
    """
    if stats is None:
        return True
    return breaker.state == "open" or stats.unrecognized > 0 or stats.errors > 0


def poll_outcomes(stats: CycleStats) -> dict[str, int]:
    """One cycle's claimed shipments split by what became of each poll."""
    counted = {
        "changed": stats.changed,
        "failed": stats.failed,
        "unrecognized": stats.unrecognized,
        "error": stats.errors,
        "lease_lost": stats.lost_leases,
        "skipped_open_circuit": stats.skipped_open_circuit,
        "handed_back": stats.handed_back_on_stop,
    }
    # Whatever was claimed and none of the above was read and found as it was.
    counted["unchanged"] = max(0, stats.claimed - sum(counted.values()))
    return counted


@dataclass(slots=True)
class Activity:
    """Counters since the process started, updated by the daemon after each cycle and drain.

    Also what the health check needs to tell a long cycle from a stuck scheduler: a cycle in
    progress since `cycle_started_at` may legitimately run for up to `cycle_lease`.
    """

    started_at: dt.datetime | None = None
    cycles: Counter[str] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    emails: Counter[str] = field(default_factory=Counter)
    # "ok" / "failed" posts of the operator webhook, "ok" / "fail" / "error" heartbeat pings.
    webhook_posts: Counter[str] = field(default_factory=Counter)
    heartbeat_pings: Counter[str] = field(default_factory=Counter)
    # Sends to the Apprise operator channels, by (channel name, "ok" / "failed").
    channel_sends: Counter[tuple[str, str]] = field(default_factory=Counter)
    drains: int = 0
    cycle_started_at: dt.datetime | None = None
    cycle_lease: dt.timedelta = dt.timedelta(minutes=10)

    def cycle_began(self, now: dt.datetime, lease: dt.timedelta) -> None:
        self.cycle_started_at = now
        self.cycle_lease = lease

    def cycle_ended(self, stats: CycleStats | None, *, failing: bool) -> None:
        """Count one cycle; `stats` is None when it raised (its polls rolled back)."""
        self.cycle_started_at = None
        if stats is None:
            self.cycles["error"] += 1
            return
        self.cycles["failing" if failing else "good"] += 1
        self.polls.update(poll_outcomes(stats))
        self.requests.update(
            list=stats.list_requests, detail=stats.detail_requests, wording=stats.wording_requests
        )

    def drained(self, result: DrainResult) -> None:
        self.drains += 1
        self.emails.update(
            sent=result.sent,
            retried=result.retried,
            failed=result.failed,
            deferred=result.deferred,
            suppressed=result.suppressed,
            held=result.held,
        )
