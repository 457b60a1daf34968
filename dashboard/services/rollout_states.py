"""Every state a rollout and a rollout target can be in, and the groups the engine, ingest and pages count by."""

from __future__ import annotations

from enum import StrEnum


class TargetState(StrEnum):
    """One node's place in a rollout (the strings stored in rollout_targets.state)."""

    PENDING = "PENDING"
    SENT = "SENT"
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    INSTALLING = "INSTALLING"
    SELF_TEST = "SELF_TEST"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    ROLLBACK_SENT = "ROLLBACK_SENT"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"


class RolloutState(StrEnum):
    """A rollout's own state (the strings stored in rollouts.state)."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    CANARY = "CANARY"
    SOAKING = "SOAKING"
    ROLLING = "ROLLING"
    HALTED = "HALTED"
    ROLLING_BACK = "ROLLING_BACK"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"


T, R = TargetState, RolloutState
# Sent and not yet finished on the node: counted as in flight.
IN_FLIGHT = frozenset({T.SENT, T.DOWNLOADING, T.DOWNLOADED, T.VERIFIED, T.INSTALLING, T.SELF_TEST})
WAITING = frozenset({T.PENDING, *IN_FLIGHT})
DONE = frozenset({T.ACTIVE, T.FAILED, T.SKIPPED})
FAILED = frozenset({T.FAILED})
ROLLBACK = frozenset({T.ROLLBACK_SENT, T.ROLLED_BACK, T.ROLLBACK_FAILED})

# Rollouts the engine still drives, those it has finished, and those that send model updates.
RUNNING = frozenset({R.SCHEDULED, R.PENDING, R.CANARY, R.SOAKING, R.ROLLING, R.HALTED, R.ROLLING_BACK})
FINISHED = frozenset({R.COMPLETED, R.ROLLED_BACK})
ADVANCING = frozenset({R.PENDING, R.CANARY, R.SOAKING, R.ROLLING})

# The admin intents and the rollout states each is accepted in.
ALLOWED = {
    "halt": frozenset({R.SCHEDULED, *ADVANCING}),
    "resume": frozenset({R.HALTED}),
    "rollback": frozenset({*ADVANCING, R.HALTED, R.COMPLETED}),
}


def group_of(state: str) -> str:
    """The bucket a target state is counted in on progress bars: done, failed, in_flight, pending or rollback."""
    if state == T.ACTIVE:
        return "active"
    if state in FAILED:
        return "failed"
    if state in IN_FLIGHT:
        return "in_flight"
    if state in ROLLBACK:
        return "rollback"
    return "skipped" if state == T.SKIPPED else "pending"
