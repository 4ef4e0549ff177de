"""The date a chat template writes: fixed, so a row renders the same whatever day it is rendered on.

Llama 3.2's and 3.3's published templates write `Today Date: ` + strftime_now("%d %b %Y") into every system
block when the caller passes no `date_string` (transformers, vLLM and llama.cpp --jinja all define strftime_now as
the clock). Left alone, what lorapilot trains would depend on the day: a run resumed after midnight, the wizard's
preview against the trainer, the playground's prompt against the training prefix, an export's template against
either; each would disagree by a few tokens, silently.

So the template training uses, saves with the adapter and every export carries has strftime_now pinned: a macro
at its top, named like the clock, returns FIXED_DAY in each format the template asks for. FIXED_DAY is the date
Llama 3.1's template writes always and 3.2's writes where no clock is defined (and Ollama's llama3.1 template
writes): 26 Jul 2024. A caller that passes its own `date_string` still gets it (the template asks the clock only
without one). A template that asks the clock in a format that is no string literal cannot be pinned here: it is
kept, and the data report says so.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

FIXED_DAY = datetime(2024, 7, 26)
_MARK = "{#- lorapilot: strftime_now is pinned to %s: rows render alike whatever the day -#}\n"
_CALL = re.compile(r"strftime_now\s*\(")
_LITERAL_CALL = re.compile(r"""strftime_now\s*\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")


def _clock_formats(template: str) -> list[str] | None:
    """The formats the template asks the clock for; None when one of them is no string literal."""
    literals = [a or b for a, b in _LITERAL_CALL.findall(template)]
    return literals if len(literals) == len(_CALL.findall(template)) else None


def pin_date(template: str) -> tuple[str, str | None]:
    """(the template with strftime_now pinned to FIXED_DAY, what the data report says of it, or None).

    Unchanged when it never asks the clock, or is pinned already (a template saved with an adapter)."""
    day = FIXED_DAY.strftime("%d %b %Y")
    mark = _MARK % day
    if mark in template or not _CALL.search(template):
        return template, None
    formats = _clock_formats(template)
    if formats is None:
        return template, ("the chat template writes the date it is rendered on (strftime_now) in a way lorapilot "
                          "cannot fix: rows rendered on different days differ, so a resume, the playground or an "
                          "export on another day may not see what training saw")
    branches = "".join(f"{{%- {'if' if i == 0 else 'elif'} format == {json.dumps(f)} %}}"
                       f"{{{{ {json.dumps(FIXED_DAY.strftime(f))} }}}}" for i, f in enumerate(dict.fromkeys(formats)))
    macro = f"{{%- macro strftime_now(format) -%}}{branches}{{%- endif -%}}{{%- endmacro -%}}\n"
    note = (f"the chat template writes the date it is rendered on: lorapilot renders, saves and exports it with the "
            f"date fixed at {day}, so training, the playground, a resume and every export agree whatever the day")
    return mark + macro + template, note
