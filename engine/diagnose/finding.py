"""A finding: one thing diagnostics noticed, in words a user can act on.

The same type serves the live checks over metrics (written to metrics.jsonl
as `kind: finding` records) and the pre-flight data doctor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from engine.diagnose.codes import LIVE_CODES, SEVERITIES

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # info | warning | error
    step: int | None  # training step it refers to; None before training (pre-flight)
    message: str  # what is wrong, one sentence
    evidence: str  # the numbers that show it
    fix: str  # what to change
    time: float | None = None  # seconds since the epoch of the record that raised it

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def to_record(self) -> dict:
        """The metrics.jsonl record (DESIGN.md); `time` only when known."""
        record: dict[str, Any] = {"kind": "finding", "step": self.step}
        if self.time is not None:
            record["time"] = self.time
        record.update(code=self.code, severity=self.severity, message=self.message,
                      evidence=self.evidence, fix=self.fix)
        return record

    @classmethod
    def from_record(cls, record: dict) -> "Finding":
        severity = record.get("severity")
        return cls(code=str(record.get("code", "unknown")),
                   severity=severity if severity in SEVERITY_RANK else "info",
                   step=record.get("step"), message=str(record.get("message", "")),
                   evidence=str(record.get("evidence", "")), fix=str(record.get("fix", "")),
                   time=record.get("time"))


def finding_details(f: Finding) -> list[tuple[str, str]]:
    """What every verb prints under a finding's headline, (label, text), in this order: the numbers that show it
    and what to change, each where there is one. `lorapilot train`, train.log, inspect-data and diagnose print
    these (the wizard and the monitor draw the same two under their own headline)."""
    return [(label, text) for label, text in (("evidence", f.evidence), ("fix", f.fix)) if text]


def finding_where(f: Finding) -> str:
    """When a finding was made, in the words every reader of metrics.jsonl uses: "pre-flight" for the checks made
    before training (recorded at step 0; "step 0" read as a step the run took), else "step N"."""
    return "pre-flight" if not f.step and f.code not in LIVE_CODES else f"step {f.step}"


def finding_text(f: Finding, where: str) -> str:
    """A finding as plain lines (train's output, train.log): `where  [severity] code: message`, then its details
    indented under the message. Text from a run directory is made safe to print, one line each."""
    from engine.rundir import safe_text

    head = f"{where}  "
    lines = [f"{head}[{f.severity}] {f.code}: {f.message}"]
    lines += [f"{' ' * len(head)}{label}: {text}" for label, text in finding_details(f)]
    return "\n".join(safe_text(line, one_line=True) for line in lines)


def blocking(findings: Iterable[Finding]) -> bool:
    """True when any finding is an error: training must not start."""
    return any(f.severity == "error" for f in findings)


def newest_first(findings: Iterable[Finding]) -> list[Finding]:
    """Latest step first; pre-flight findings (no step) last; stable otherwise."""
    indexed = list(enumerate(findings))
    indexed.sort(key=lambda pair: (pair[1].step if pair[1].step is not None else -1, pair[0]), reverse=True)
    return [f for _, f in indexed]
