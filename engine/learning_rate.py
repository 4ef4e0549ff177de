"""The one rule for a learning rate: the range recommended for the model, and how far outside it a value is.

Every surface renders `lr_verdict`, so none can disagree with another: the hyperparameters screen's hint (through
engine.config.advice), the review checklist and the headless pre-flight (engine.diagnose.settings_check, the
`learning_rate_unusual` finding) and `lorapilot estimate`'s lr line (engine.estimate.lr).

Graded: inside the range is ok; outside it by up to FAR times is `info` (worth knowing, often fine); further out is
a `warning` (the loss spikes or NaNs, or barely moves). The demo's tiny random model is judged against its own
range, said as such: it needs a far higher rate than a pretrained model to move visibly in its 40 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

# The QLoRA paper trains at 2e-4 (7B-13B) and 1e-4 (33B-65B); guides go up to 3e-4.
LORA_RANGE = (1e-4, 3e-4)
LORA_TYPICAL = 2e-4
# presets/demo.yaml's rate (a test checks the two agree), and the band around it the demo still trains in: its
# 40 steps on this CPU take the eval loss from 8.2 to 3.0 at 1e-3 and to 2.4 at 5e-3.
DEMO_RANGE = (1e-3, 5e-3)
DEMO_TYPICAL = 3e-3
# Further outside the range than this factor: a warning, not a note.
FAR = 3.0

LEVELS = ("ok", "info", "warning")   # the finding severities the levels are shown with (ok: no finding)


def sci(x: float) -> str:
    """A rate as users type it: 2e-4, 2.5e-4, 3e-3 (not 0.0002 or 2.0e-04)."""
    mantissa, exponent = f"{x:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def range_text(lo: float, hi: float) -> str:
    return f"{sci(lo)} to {sci(hi)}"  # not "1e-4-3e-4": the exponent's minus reads as the range's dash


# The field's hint line (engine.config's FieldSpec.recommended): the same numbers, written once, here.
RECOMMENDED_TEXT = f"{range_text(*LORA_RANGE)}, {sci(LORA_TYPICAL)} typical"


@dataclass(frozen=True)
class LrVerdict:
    learning_rate: float
    level: str           # ok | info | warning
    side: str            # in | low | high
    range: tuple[float, float]
    typical: float
    demo: bool           # judged against the demo model's own range
    message: str         # one sentence, under 76 columns, the same on every surface

    @property
    def worth_saying(self) -> bool:
        """Outside its range, or inside the demo's (whose rate the field's recommended range would call wrong)."""
        return self.level != "ok" or self.demo

    @property
    def fix(self) -> str:
        return f"Set training.learning_rate to {self.typical:g}"


def lr_verdict(learning_rate: float, model: str) -> LrVerdict:
    """The verdict on `learning_rate` for `model` (a hub id or directory; the demo's id gets the demo's range)."""
    from engine.demo.model import DEMO_MODEL_ID

    demo = model == DEMO_MODEL_ID
    lo, hi = DEMO_RANGE if demo else LORA_RANGE
    typical = DEMO_TYPICAL if demo else LORA_TYPICAL
    v, span = sci(learning_rate), range_text(lo, hi)
    name = "the demo's" if demo else "the recommended"
    if learning_rate > hi:
        side, level = "high", "warning" if learning_rate > FAR * hi else "info"
    elif learning_rate < lo:
        side, level = "low", "warning" if learning_rate < lo / FAR else "info"
    else:
        side, level = "in", "ok"
    where = {"high": "above", "low": "below"}.get(side, "")
    if level == "ok":
        message = (f"{v}: the demo's tiny model trains at ~{sci(typical)}" if demo
                   else f"{v} is within the recommended {span} ({sci(typical)} typical)")
    elif level == "info":
        message = f"{v} is a little {where} {name} {span} ({sci(typical)} typical)"
    else:
        consequence = "expect loss spikes or NaN" if side == "high" else "the loss may barely move"
        message = f"{v} is far {where} {name} {span}: {consequence}"
    return LrVerdict(learning_rate, level, side, (lo, hi), typical, demo, message)
