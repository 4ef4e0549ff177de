"""The one rule for lora.alpha: the adapter's update is multiplied by alpha / r (PEFT's `scaling`).

alpha is judged against r, never alone: alpha 64 is the recipe at r 32 and four times it at r 8. Every surface
reads this module, so none can disagree with another: the validator refuses a scale past MAX_SCALE
(engine.config's cross-checks, on the lora.alpha row in the wizard as on the command line), the hyperparameters
screen's hint and advice line (engine.config), and the pre-flight's `lora_alpha_unusual` warning
(engine.diagnose.settings_check), which `lorapilot train` prints and metrics.jsonl keeps.

The seeds' guide only says alpha is "the scaling factor" and that higher values move the model further from
what it knew; the numbers are the recipes'.
"""

from __future__ import annotations

# alpha = 2 x r: presets/recipes/*, the demo and the sweep's trials (engine.sweep.plan).
USUAL_SCALE = 2
# The scales recipes use: 0.25 is the QLoRA paper's own (r 64, alpha 16), 4 the top of guides' alpha = r .. 4r.
# Outside: a warning (the update is that many times weaker or stronger, as a learning rate that far off would be).
USUAL_RANGE = (0.25, 4.0)
# Past this the update is scaled as a learning rate 16x the recipe's would be: a typo (alpha 16000 for 16), refused.
MAX_SCALE = 32

# The field's hint (engine.config's FieldSpec): the same numbers, written once, here.
RECOMMENDED_TEXT = f"{USUAL_SCALE} x r"
MAX_TEXT = f"{MAX_SCALE} x r"


def usual_alpha(r: int) -> int:
    return USUAL_SCALE * r


def alpha_problem(alpha: float, r: int) -> str | None:
    """The validator's refusal of a scale past MAX_SCALE, naming the key; None when allowed."""
    scale = alpha / r
    if scale <= MAX_SCALE:
        return None
    return (f"lora.alpha: {alpha:g} is {scale:g} x lora.r ({r}), an update scaled {scale:g}x; allowed up to "
            f"{MAX_TEXT} ({MAX_SCALE * r}), usually {RECOMMENDED_TEXT} ({usual_alpha(r)})")


def alpha_advice(alpha: float, r: int) -> str | None:
    """A valid scale outside the usual range, in one line under 76 columns; None inside it."""
    scale = alpha / r
    lo, hi = USUAL_RANGE
    if lo <= scale <= hi:
        return None
    return f"alpha/r = {scale:g}: the usual choice is alpha = {RECOMMENDED_TEXT} ({usual_alpha(r)})"
