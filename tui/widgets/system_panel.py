"""CPU and RAM of the machine and of the trainer process (with its dataloader workers)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from engine.system import ProcessSample
from tui.models.run_history import SYSTEM
from tui.widgets.meter_text import meter
from tui.widgets.monitor_panel import MonitorPanel

LABEL = 8


class SystemPanel(MonitorPanel):
    TITLE = "System"

    def key(self) -> int:
        return self.history.versions[SYSTEM]

    def build(self) -> Group | Text:
        h = self.history
        m, p = h.machine, h.process
        if m is None:
            return Text("reading…", style="dim")
        width = max(30, self.content_size.width or 40)
        lines = []
        for name, frac, figures in (
            ("CPU", m.cpu_pct / 100, f" {m.cpu_pct:3.0f}% of {m.cpu_count}"),
            ("RAM", m.ram_frac, f" {m.ram_used_gib:.1f}/{m.ram_total_gib:.0f} GiB"),
        ):
            bar_w = max(6, width - LABEL - len(figures))
            lines.append(Text.assemble((name.ljust(LABEL), "bold"), meter(frac, bar_w), figures))
        lines.append(self._trainer_line(p))
        return Group(*lines)

    def _trainer_line(self, p: ProcessSample | None) -> Text:
        head = ("trainer".ljust(LABEL), "bold")
        pid = (self.history.status or {}).get("pid")
        if p is None:
            return Text.assemble(head, ("no pid in status.json" if not pid else "…", "dim"))
        if not p.alive:
            return Text.assemble(head, f"pid {p.pid} ", ("not running", "dim"))
        workers = f" (+{p.children} child{'ren' if p.children != 1 else ''})" if p.children else ""
        return Text.assemble(head, f"pid {p.pid}  CPU {p.cpu_pct:.0f}%  RSS {p.rss_gib:.1f} GiB{workers}")
