"""A config field's value as the text a user types for it, and back: the way the YAML config writes it.

The wizard keeps every field as typed text, so a value the validator rejects is never lost; validation stays
engine.config's (config_from_dict), this only turns text box contents into values and values into text.
"""

from __future__ import annotations

from typing import Any

import yaml

from engine.config import FieldSpec, value_problem
from engine.config_file import yaml11_number


def to_raw(spec: FieldSpec, value: Any) -> str:
    """How a value reads in its field: the way one would write it in the YAML config."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Short where that is the same number (0.0002, 3); else every digit: a field shows what the config holds,
        # and the wizard saves what the field shows (0.00012345678 was shown, and saved back, as 0.000123457).
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def from_raw(spec: FieldSpec, text: str) -> Any:
    """The value a field's text stands for, read as the YAML config would read it.

    Validation is the engine's (config_from_dict); this only undoes the text box.
    """
    stripped = text.strip()
    if stripped == "" and spec.nullable:
        return None
    if spec.type is str and spec.kind is None:
        # A path dropped into a terminal, or copied from `ls`, comes quoted when it holds a space: '/data/my set'.
        # The config reads such a quoted value as the path inside the quotes; so does the field.
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
            try:
                unquoted = yaml.safe_load(stripped)
            except yaml.YAMLError:
                return stripped
            return unquoted.strip() if isinstance(unquoted, str) else stripped
        return stripped
    if stripped and spec.kind is list and not stripped.startswith("["):
        # One entry typed alone (a sample prompt, a logger): the text as typed, the validator makes it a list of
        # one. Read as YAML, "What is C#? #1" lost its end as a comment and "Say: hi" became a mapping.
        return stripped
    if yaml11_number(stripped):
        # 042 is octal to YAML (34), 1:30 base 60 (90): a field shows what was typed, so it reads as typed (042 is
        # 42; 1:30 is refused as no number), never as a number the box does not show.
        return stripped
    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError:
        return stripped  # the validator then names the field and what it expects


def empty_text(spec: FieldSpec, hint: str = "") -> str:
    """What a field shows while it is empty (its placeholder). Where the validator refuses an empty value, an
    example ("e.g. 16"): a bare default in grey beside "must be set" read as if it were set. Where empty is
    accepted, what empty stands for: the schema's words (`empty_means`: "from num_epochs", "all visible"), else
    `hint` (the screen's description of the field), else the default. Never an example of what empty already
    means: "e.g. -1" for max_steps read as advice to type -1."""
    refused = value_problem(spec, from_raw(spec, "")) is not None
    if refused:
        example = hint or to_raw(spec, spec.default)
        return f"e.g. {example}" if example else "required"
    return spec.empty_means or hint or to_raw(spec, spec.default)
