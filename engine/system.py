"""The machine's and the trainer process's CPU and memory, through psutil.

CPU percentages are measured between two calls (psutil's cpu_percent with no
interval), so the sampler keeps its psutil.Process objects between samples:
the first sample of a process reads 0 % and every later one is the average
since the previous call, with no sleeping inside the call.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from engine.settings import GIB


@dataclass(frozen=True)
class MachineSample:
    cpu_pct: float          # all cores together, 0..100
    cpu_count: int
    ram_used_gib: float
    ram_total_gib: float

    @property
    def ram_frac(self) -> float:
        return self.ram_used_gib / self.ram_total_gib if self.ram_total_gib else 0.0


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    alive: bool
    cpu_pct: float = 0.0    # of one core (a busy trainer with dataloader workers shows > 100)
    rss_gib: float = 0.0
    children: int = 0       # dataloader workers, compile workers: their CPU and RSS are included


def machine_sample() -> MachineSample:
    vm = psutil.virtual_memory()
    return MachineSample(
        cpu_pct=psutil.cpu_percent(interval=None),
        cpu_count=psutil.cpu_count() or 1,
        ram_used_gib=(vm.total - vm.available) / GIB,
        ram_total_gib=vm.total / GIB,
    )


class ProcessSampler:
    """Samples one process and its children; reuse one instance so CPU % has a baseline."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def _proc(self, pid: int) -> psutil.Process:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
            p.cpu_percent(None)  # the baseline; psutil answers 0.0 on a first call anyway
        return p

    def sample(self, pid: int | None) -> ProcessSample | None:
        if not pid:
            return None
        try:
            root = self._proc(pid)
            if root.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
            cpu, rss = root.cpu_percent(None), root.memory_info().rss
            kids = root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return ProcessSample(pid=pid, alive=False)
        except psutil.AccessDenied:
            return ProcessSample(pid=pid, alive=True)
        alive_kids = {k.pid for k in kids}
        for k in kids:
            try:
                kp = self._proc(k.pid)
                cpu += kp.cpu_percent(None)
                rss += kp.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                alive_kids.discard(k.pid)
        # Forget children that exited so the cache does not grow over a long run.
        for old in [p for p in self._procs if p != pid and p not in alive_kids]:
            del self._procs[old]
        return ProcessSample(pid=pid, alive=True, cpu_pct=cpu, rss_gib=rss / GIB, children=len(alive_kids))


def process_sample(pid: int | None, sampler: ProcessSampler | None = None) -> ProcessSample | None:
    """A one-off sample; pass a long-lived sampler to get a meaningful CPU %."""
    return (sampler or ProcessSampler()).sample(pid)
