"""How long a run has trained: the sum of its lives' spans, read from the run directory.

A run lives once per launch: `lorapilot train`, then each `train --resume`. The time between two lives (a run
stopped overnight) is no training, so elapsed leaves it out. A life begins at its launch (status.json's
`launched`, rewritten at each launch, so it only knows the latest life; the `resumed` event carries its own
life's launch) or, where neither says, its first record; it ends with its last record. The monitor and the model
card both read this one rule.
"""

from __future__ import annotations

import math
import time

from engine.rundir import finite_number, resumed_at


class RunClock:
    """Fed metrics.jsonl's records in order (all at once or as they arrive); says the run's elapsed time."""

    def __init__(self) -> None:
        self.lives: list[list[float]] = []   # [start, last record] of each life the records show, in order

    def add(self, rec: dict) -> None:
        t = finite_number(rec.get("time"))
        if t is None:
            return
        if resumed_at(rec) is not None or not self.lives:
            launched = finite_number(rec.get("launched")) if resumed_at(rec) is not None else None
            self.lives.append([launched if launched is not None and launched <= t else t, t])
            return
        life = self.lives[-1]
        life[0], life[1] = min(life[0], t), max(life[1], t)

    def elapsed(self, status: dict | None, *, live: bool, now: float | None = None) -> float | None:
        """Seconds trained: every life from its launch to its last record, the latest to now where `live` (or,
        with no record of its own, to status.json's last update); None when nothing says when the run began."""
        st = status or {}
        launched = finite_number(st.get("launched"))
        if launched is None:
            launched = finite_number(st.get("started"))  # what status.json said before `launched`
        lives = [list(life) for life in self.lives]
        first = finite_number(st.get("first_launched"))  # the first life's launch, kept when a resume relaunched
        if lives and first is not None and first <= lives[0][1]:
            lives[0][0] = min(lives[0][0], first)
        if launched is not None and (not lives or launched > lives[-1][1]):
            lives.append([launched, math.nan])  # launched after the last record: a life starting up, no record yet
        elif launched is not None:
            lives[-1][0] = min(lives[-1][0], launched)
        if not lives:
            return None
        end = (time.time() if now is None else now) if live else \
            (lives[-1][1] if not math.isnan(lives[-1][1]) else finite_number(st.get("updated")))
        if end is None:
            return None
        lives[-1][1] = end
        return sum(max(0.0, last - start) for start, last in lives)


def run_elapsed(status: dict | None, records: list[dict]) -> float | None:
    """The elapsed time of an ended run (the model card's training time)."""
    clock = RunClock()
    for rec in records:
        clock.add(rec)
    return clock.elapsed(status, live=False)
