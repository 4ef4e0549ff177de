"""Per-GPU memory (with the 90 % line), utilisation, temperature, power; the trainer's own peak beside the
estimate's."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from engine.gpu import OK
from tui.models.run_history import GPU
from tui.widgets.meter_text import DANGER_AT, gib, level_style, meter
from tui.widgets.monitor_panel import MonitorPanel

LABEL = 8
COMPACT_ABOVE = 2


class GpuPanel(MonitorPanel):
    TITLE = "GPU"

    def key(self) -> int:
        return self.history.versions[GPU]

    def build(self) -> Group | Text:
        h = self.history
        width = max(24, self.content_size.width or 40)
        used, total, util, peak = h.trainer_gpu_mem()
        lines: list[Text] = []
        if h.gpu_state is None:
            return Text("reading GPUs…", style="dim")
        if h.gpu_state == OK:
            # Up to two GPUs get a details line each; an 8-GPU node gets one line per GPU.
            compact = len(h.gpus) > COMPACT_ABOVE
            for g in h.gpus:
                util_temp = [f"util {g.util_pct:.0f}%" if g.util_pct is not None else None,
                             f"{g.temp_c:.0f}°C" if g.temp_c is not None else None]
                if compact:
                    lines.append(self._gpu_head(g.index, g.mem_used_gib, g.mem_total_gib, width,
                                                " ".join(e for e in util_temp if e)))
                    continue
                extra = [g.name, *util_temp, f"{g.power_w:.0f} W" if g.power_w is not None else None]
                lines += self._gpu_lines(g.index, g.mem_used_gib, g.mem_total_gib, width, extra)
        else:
            lines.append(Text.assemble(("No GPU", "bold"), f" — {h.gpu_reason}."))
            # A run copied from a pod, or a trainer on another box sharing the
            # directory: its own numbers are still worth showing.
            for i, u in enumerate(used):
                t = total[i] if i < len(total) else None
                if t:
                    extra = ["as the trainer reported", f"util {util[i]:.0f}%" if i < len(util) else None]
                    lines += self._gpu_lines(i, u, t, width, extra)
        if used or peak:
            # Two kinds of memory, each named: the allocator's peak (what the estimate's peak counts, set beside
            # it) and the card's use as nvidia-smi shows it (CUDA context and the allocator's cache on top).
            bits = []
            if peak:
                est = h.estimated_peak_gib()
                bits.append("peak allocated " + " / ".join(f"{p:.1f}" for p in peak)
                            + (f" (estimate {est:.1f})" if est is not None else ""))
            if used:
                bits.append("used " + " / ".join(f"{u:.1f}" for u in used) + " (nvidia-smi)")
            lines.append(Text.assemble(("trainer".ljust(LABEL), "bold"), " · ".join(bits) + " GiB"))
        elif h.gpu_state != OK:
            lines.append(Text("The trainer reports no GPU memory: it runs on CPU.", style="dim"))
        return Group(*lines)

    @staticmethod
    def _gpu_head(index: int, used: float, total: float, width: int, tail: str = "") -> Text:
        frac = used / total if total else 0.0
        figures = f" {gib(used)}/{gib(total)} GiB {frac * 100:3.0f}%"
        tail = f" {tail}" if tail else ""
        bar_w = max(6, width - LABEL - len(figures) - len(tail))
        return Text.assemble((f"GPU{index}".ljust(LABEL), "bold"), meter(frac, bar_w, mark_at=DANGER_AT),
                             (figures, level_style(frac)), (tail, "dim"), no_wrap=True, overflow="ellipsis")

    def _gpu_lines(self, index: int, used: float, total: float, width: int, extra: list[str | None]) -> list[Text]:
        return [self._gpu_head(index, used, total, width),
                Text(" " * LABEL + " · ".join(e for e in extra if e), style="dim", overflow="ellipsis",
                     no_wrap=True)]
