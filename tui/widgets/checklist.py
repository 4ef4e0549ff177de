"""The seeds' pre-flight checklist, each line ticked or flagged by the engine's findings.

A line is ticked when the engine checks it (its codes are among the
pre-flight codes) and raised nothing; flagged with the finding's reason and
fix when it did; and marked "not checked" when the engine has no check for it
yet, rather than pretending; likewise, with the reason, when a check could not be made this time (no estimate
to compare with the card). On this machine's CPU (no GPU) the GPU's lines say what holds there instead,
as information: no check was made, so no tick. Each finding is a block the keys reach: enter on one applies its fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from textual.content import Content

from engine.diagnose.settings_check import MANY_EPOCHS

from tui.widgets.finding_blocks import FindingBlocks
from tui.widgets.problem_list import MARK, finding_details, render_finding

# (what the seeds ask for, the finding codes that answer it). A line whose codes
# the engine does not check reads "not checked yet" rather than a tick. A line holds only the findings of its own
# rule: few_target_tokens (short responses) is no count of examples, so it is listed below the lines, on its own.
ITEMS: list[tuple[str, tuple[str, ...]]] = [
    ("At least 100 examples with trained tokens", ("no_examples", "no_target_tokens", "too_few_examples")),
    ("max_seq_length covers the responses", ("responses_truncated", "prompt_too_long")),
    ("Learning rate in the recommended range", ("learning_rate_unusual",)),
    (f"At most {MANY_EPOCHS} passes over the data (epochs)", ("many_epochs",)),  # what is checked: no lower bound
    ("bf16 or fp16 to suit the GPU", ("precision_unsupported",)),
    ("Gradient checkpointing on", ("gradient_checkpointing_off",)),
    ("Warmup at the start", ("no_warmup",)),
    ("Gradients clipped (max_grad_norm)", ("no_grad_clipping",)),
    ("Eval several times per epoch", ("eval_too_rare",)),
    ("A checkpoint before the end (save_steps)", ("no_checkpoint",)),
    ("save_total_limit keeps the disk from filling", ("no_save_limit",)),
    ("Memory under 90 % of the GPU", ("memory_estimate_high",)),
]
# The GPU's lines as they read when the run trains on this machine's CPU ({precision}: the plan's, fp32 by default).
ON_CPU = {
    "precision_unsupported": "{precision} on this CPU (no GPU)",
    "memory_estimate_high": "no GPU to fit: the run uses this machine's RAM",
}


def checked_codes() -> set[str]:
    from engine.diagnose.codes import PREFLIGHT_CODES
    return set(PREFLIGHT_CODES)


class Checklist(FindingBlocks):
    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def show(self, findings: Sequence[Any] | None, pending: str | None = None,
             cpu_precision: str | None = None, not_checked: Mapping[str, str] | None = None,
             ticked: Mapping[str, str] | None = None) -> None:
        """cpu_precision: the run trains on this machine's CPU in that precision (None: on a GPU).
        not_checked: finding codes whose check was not made this time, with why (their line reads '?', no tick).
        ticked: what a line says when its check raised nothing, by code, where the engine words it (the learning
        rate's verdict) instead of the line's title."""
        not_checked, ticked = not_checked or {}, ticked or {}
        if findings is None:
            pending_line = Content.styled(pending or "Waiting for the dataset and the estimate…", "italic $text-muted")
            self.show_blocks([(pending_line, None)])
            return
        known = checked_codes()
        by_code = {f.code: f for f in findings}
        blocks: list[tuple[Content, Any]] = []
        used: set[str] = set()
        for title, codes in ITEMS:
            raised = [by_code[c] for c in codes if c in by_code]
            used.update(codes)
            if raised:
                worst = max(raised, key=lambda f: f.rank)
                mark, style = MARK.get(worst.severity, ("·", ""))
                blocks.append((Content.styled(f"{mark} {title}", f"bold {style}"), None))
                blocks += [(Content("\n").join([Content(f"  {f.message}"), *finding_details(f, indent="  ")]), f)
                           for f in raised]
            elif cpu_precision is not None and codes[0] in ON_CPU:
                mark, style = MARK["info"]
                text = ON_CPU[codes[0]].format(precision=cpu_precision)
                blocks.append((Content.styled(f"{mark} {text}", style), None))
            elif skipped := next((not_checked[c] for c in codes if c in not_checked), None):
                blocks.append((Content.styled(f"? {title} (not checked: {skipped})", "$text-muted"), None))
            elif any(c in known for c in codes):
                text = next((ticked[c] for c in codes if c in ticked), title)
                blocks.append((Content.styled(f"✓ {text}", "$text-success"), None))
            else:
                blocks.append((Content.styled(f"? {title} (not checked yet)", "$text-muted"), None))
        # Findings beyond the seeds' list (duplicates, synthetic phrases) still belong in front of a launch.
        blocks += [(render_finding(f), f) for f in findings if f.code not in used]
        self.show_blocks(blocks)
