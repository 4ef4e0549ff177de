"""The pre-flight data doctor: what is wrong with the data and setup before a GPU hour is spent.

Pure functions over the tokenized dataset (the data layer's
`TokenizedExample`) and the config; any object with the same attributes
will do.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from engine.config import FIELDS
from engine.diagnose.cleaning import SlopMatcher, count_slop, duplicate_groups, normalise_whitespace
from engine.data.types import TokenizedExample
from engine.diagnose.finding import Finding, blocking
from engine.diagnose.settings_check import check_lora_for_model, check_settings

if TYPE_CHECKING:
    from engine.estimate.params import Architecture

__all__ = ["preflight", "blocking", "suggested_max_seq_length"]

# The seeds' checklist: at least 100 examples with trained labels.
MIN_EXAMPLES = 100
# The seeds: filter examples with fewer than 10 target tokens; one with none
# teaches nothing and can destabilise a step.
MIN_TRAINED_TOKENS = 10
# Suggest the max_seq_length that keeps this share of examples whole (the
# config's own guidance: "keeps 95% of examples whole") ...
KEEP_WHOLE_FRACTION = 0.95
# ... rounded up to a multiple of 64, a friendly number that costs little.
SEQ_LENGTH_ROUNDING = 64
# Cutting more responses than that (5 %) is a warning; fewer, a note. A cut
# response loses its end token, so the model does not learn to stop.
TRUNCATED_WARN_FRACTION = 1 - KEEP_WHOLE_FRACTION
# Duplicates and slop in more than 1 % of examples are worth acting on; a
# handful in a large set is a note.
DUPLICATE_WARN_FRACTION = 0.01
SLOP_WARN_FRACTION = 0.01
# The seeds' checklist: GPU memory below 90 % of the card at step 1.
MEMORY_HIGH_FRACTION = 0.90
# The data layer's drop reason for a row whose prompt cannot be shortened enough; its
# other reasons ("empty response", "no trained tokens") mean nothing to train.
TOO_LONG_REASONS = ("too long",)
# The largest max_seq_length the config accepts: advice never goes past it.
MAX_SEQ_LENGTH_ALLOWED = int(FIELDS["training.max_seq_length"].hi or 0)
# How many example sources a finding names before "and N more".
SOURCES_SHOWN = 5


def _place(source: str) -> tuple[str, str, str] | None:
    """(file, unit, number) of a row's source as engine.data.formats.where writes it: "train.jsonl:12" (a line),
    "train.parquet: row 3" (a row, a record, a hub dataset's row); None for anything else."""
    if m := re.fullmatch(r"(.*):(\d+)", source):
        return m[1], "line", m[2]
    if m := re.fullmatch(r"(.*): (\w+) (\d+)", source):
        return m[1], m[2], m[3]
    return None


def _sources(examples: Sequence[Any]) -> str:
    """"train.jsonl: lines 2, 3, 5 and 264 more" ("train.parquet: rows 1, 4"): the file once, then the lines
    (paths are long on pods)."""
    shown = [str(e.source) for e in examples[:SOURCES_SHOWN]]
    more = len(examples) - len(shown)
    places = [_place(s) for s in shown]
    if all(places) and len({(p[0], p[1]) for p in places if p}) == 1:
        path, unit, _ = places[0] or ("", "", "")
        text = f"{os.path.basename(path)}: {unit}{'s' if len(shown) > 1 else ''} " + \
            ", ".join(p[2] for p in places if p)
    else:
        text = ", ".join(os.path.basename(s) for s in shown)
    return text + (f" and {more} more" if more > 0 else "")


def _percent(part: int, whole: int) -> str:
    return f"{part} of {whole} ({part / whole:.1%})"


def suggested_max_seq_length(examples: Sequence[Any], *, too_long_lengths: Sequence[int]) -> int:
    """The shortest round max_seq_length that keeps KEEP_WHOLE_FRACTION of examples whole.

    Of every training row: the kept `examples` (their lengths before truncation) and the rows the data layer
    dropped as too long (DataReport.too_long_lengths), which a max_seq_length too short for the data leaves out
    exactly when this advice is needed."""
    ordered = sorted([e.full_length for e in examples] + list(too_long_lengths))
    index = max(0, math.ceil(KEEP_WHOLE_FRACTION * len(ordered)) - 1)
    return math.ceil(ordered[index] / SEQ_LENGTH_ROUNDING) * SEQ_LENGTH_ROUNDING


def _reasons(dropped: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} x{n}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1]))


def _check_nothing_left(dropped: Mapping[str, int]) -> Finding:
    """No example survived loading: the data layer dropped every row, or there were none."""
    if not dropped:
        return Finding("no_examples", "error", None, "The dataset has no examples.", "0 examples",
                       "Check dataset.path and dataset.format.")
    fix = "Check that the responses are not empty and that dataset.format picked the right fields."
    if any(reason in TOO_LONG_REASONS for reason in dropped):
        fix = "Raise training.max_seq_length, or shorten the prompts. " + fix
    return Finding("no_target_tokens", "error", None,
                   "Every row was dropped before training: there is nothing to learn.",
                   f"0 of {sum(dropped.values())} rows left ({_reasons(dropped)})", fix)


def _check_targets(examples: Sequence[Any], dropped: Mapping[str, int]) -> list[Finding]:
    total = len(examples)
    empty = [e for e in examples if e.trained_tokens == 0]
    few = [e for e in examples if 0 < e.trained_tokens < MIN_TRAINED_TOKENS]
    untrainable = {r: n for r, n in dropped.items() if r not in TOO_LONG_REASONS and n}
    if len(empty) == total:
        cut_away = sum(1 for e in empty if e.trained_tokens_full > 0)
        fix = ("Every label is -100. With train_on: completions only the responses are trained: check that the "
               "response field is not empty and that dataset.format picked the right fields; raw text needs "
               "format: text (or train_on: all).")
        if cut_away:
            fix = f"{cut_away} responses were cut away entirely by max_seq_length: raise it. " + fix
        return [Finding("no_target_tokens", "error", None,
                        "No example has a single trained token: there is nothing to learn, training would be wasted.",
                        f"0 of {total} examples have a label other than -100", fix)]
    findings = []
    if empty or few or untrainable:
        parts = []
        if untrainable:
            parts.append(f"{sum(untrainable.values())} rows dropped with nothing to train ({_reasons(untrainable)})")
        if empty:
            parts.append(f"{_percent(len(empty), total)} train on no token at all ({_sources(empty)})")
        if few:
            parts.append(f"{_percent(len(few), total)} on fewer than {MIN_TRAINED_TOKENS} ({_sources(few)})")
        if empty or untrainable:
            severity, message = "warning", "Some examples have no or very few trained (response) tokens."
            fix = "Remove or fix examples with empty responses; very short answers are fine only if that is the task."
        else:   # only short answers, none empty: the bundled demo's one-word replies are such a set
            severity, message = "info", "Some examples have very short responses: few tokens to learn from."
            fix = ("Fine if short answers are the task (a label, yes or no); otherwise check that each row's response "
                   "holds the whole answer.")
        findings.append(Finding("few_target_tokens", severity, None, message, "; ".join(parts), fix))
    return findings


def _check_lengths(examples: Sequence[Any], max_seq_length: int, dropped: Mapping[str, int],
                   too_long_lengths: Sequence[int]) -> list[Finding]:
    total, findings = len(examples), []
    cut = [e for e in examples if e.trained_tokens < e.trained_tokens_full]
    if cut:
        suggestion = suggested_max_seq_length(examples, too_long_lengths=too_long_lengths)
        longest = max(e.full_length for e in examples)
        lost = sum(e.trained_tokens_full - e.trained_tokens for e in cut)
        if suggestion <= MAX_SEQ_LENGTH_ALLOWED:
            fix = (f"Set training.max_seq_length to {suggestion} (keeps {KEEP_WHOLE_FRACTION:.0%} of examples "
                   "whole), or shorten those examples.")
        else:  # advice the validator would refuse (and `inspect-data --fix` would write) is no advice
            fix = (f"Split or shorten those examples: keeping {KEEP_WHOLE_FRACTION:.0%} of them whole needs "
                   f"{suggestion:,} tokens, more than the largest max_seq_length allowed "
                   f"({MAX_SEQ_LENGTH_ALLOWED:,}).")
        findings.append(Finding(
            "responses_truncated", "warning" if len(cut) / total > TRUNCATED_WARN_FRACTION else "info", None,
            f"max_seq_length {max_seq_length} cuts off the end of some responses: the model will not learn to stop.",
            f"{_percent(len(cut), total)} responses cut, {lost} response tokens lost; longest example {longest} "
            f"tokens ({_sources(cut)})", fix))
    # Prompt tokens are the untrained ones (with train_on: completions); the data layer shortens such prompts.
    too_long = [e for e in examples if getattr(e, "prompt_shortened", False)
                or e.full_length - e.trained_tokens_full > max_seq_length]
    dropped_long = sum(n for r, n in dropped.items() if r in TOO_LONG_REASONS)
    if too_long or dropped_long:
        evidence = [f"{_percent(len(too_long), total)} examples shortened ({_sources(too_long)})"] if too_long else []
        evidence += [f"{dropped_long} rows dropped as too long"] if dropped_long else []
        findings.append(Finding(
            "prompt_too_long", "warning", None,
            f"Some prompts alone are longer than max_seq_length {max_seq_length}: they will be shortened or dropped.",
            "; ".join(evidence),
            "Raise training.max_seq_length or shorten those prompts (long context, pasted documents)."))
    return findings


def _check_size_and_duplicates(examples: Sequence[Any]) -> list[Finding]:
    total, findings = len(examples), []
    if total < MIN_EXAMPLES:
        findings.append(Finding(
            "too_few_examples", "warning", None,
            f"Only {total} examples: fewer than {MIN_EXAMPLES} rarely teach a model anything that generalises.",
            f"{total} examples", f"Collect at least {MIN_EXAMPLES} (500-5000 is typical for instruction tuning); "
            "with few examples train 1-3 epochs and watch the eval loss for overfitting."))
    keys = [normalise_whitespace(e.prompt_text) + "\x00" + normalise_whitespace(e.response_text) for e in examples]
    groups = duplicate_groups(keys)
    if groups:
        extra = sum(len(g) - 1 for g in groups)
        example = _sources([examples[i] for i in groups[0][:3]])   # lines named as every finding names them
        findings.append(Finding(
            "duplicate_examples", "warning" if extra / total > DUPLICATE_WARN_FRACTION else "info", None,
            "Some examples are exact duplicates (ignoring whitespace): they are trained on more than once.",
            f"{extra} extra copies in {len(groups)} group{'' if len(groups) == 1 else 's'}, "
            f"e.g. {example} are the same",
            f"Keep one of each ({_how_to_dedup(examples[groups[0][0]].source)}); duplicates push the model to "
            "memorise."))
    return findings


def _how_to_dedup(source: Any) -> str:
    """`lorapilot prepare` de-duplicates the raw files it reads (CSV, HTML, SQL, text), not a training JSONL: it
    refuses one ('unknown kind of file'), so naming it there sent the user to a dead end."""
    from engine.diagnose.raw_sources import ALL_SUFFIXES

    file = str(source).rsplit(":", 1)[0]
    if file.lower().endswith(ALL_SUFFIXES):
        return "`lorapilot prepare` de-duplicates by default"
    return "the evidence names where they are"


def _check_slop(examples: Sequence[Any], matcher: SlopMatcher | None) -> list[Finding]:
    with_slop, per_phrase = count_slop((e.response_text for e in examples), matcher)
    if not with_slop:
        return []
    top = ", ".join(f"\"{p}\" x{n}" for p, n in per_phrase.most_common(3))
    return [Finding(
        "slop_phrases", "warning" if with_slop / len(examples) > SLOP_WARN_FRACTION else "info", None,
        "Some responses contain phrases typical of synthetic data (AI disclaimers, refusals): the model will "
        "learn to say them.", f"{_percent(with_slop, len(examples))} responses; {top}",
        "Drop or rewrite those examples: `lorapilot prepare --filter-slop` (phrase list in "
        "presets/slop_phrases.txt).")]


def _check_system_prompt(examples: Sequence[Any]) -> list[Finding]:
    """Rows whose system prompt the chat template leaves out (the data layer's TokenizedExample.system_left_out)."""
    left_out = [e for e in examples if getattr(e, "system_left_out", False)]
    if not left_out:
        return []
    return [Finding(
        "system_prompt_left_out", "warning", None,
        "The model's chat template leaves the system prompt out of conversations that end with an answer: these "
        "rows train without their system prompt, and at inference the model will see one it was not trained with.",
        f"{_percent(len(left_out), len(examples))} rows train without their system prompt ({_sources(left_out)}); "
        "the template writes it only into a last user turn (as Mistral v0.3, Nemo and Small do), so Ollama, vLLM "
        "or apply_chat_template put it in front of the question (lorapilot's samples and playground feed what "
        "training saw: no system prompt)",
        "Put the instructions into the first user message of each row instead of a system message, or train a "
        "model whose chat template keeps the system prompt in every conversation.")]


def _check_hardware(cfg: Any, gpu_bf16: bool | None, est_peak_gib: float | None,
                    gpu_total_gib: float | None) -> list[Finding]:
    findings = []
    if gpu_bf16 is False and cfg.training.precision == "bf16":
        findings.append(Finding(
            "precision_unsupported", "error", None,
            "training.precision is bf16 but this GPU has no bf16 support (T4, V100 and older).",
            "precision: bf16; GPU bf16 support: no", "Set training.precision to auto or fp16."))
    if est_peak_gib is not None and gpu_total_gib:
        fraction = est_peak_gib / gpu_total_gib
        if fraction >= MEMORY_HIGH_FRACTION:
            fits = fraction < 1.0
            findings.append(Finding(
                "memory_estimate_high", "warning" if fits else "error", None,
                ("The estimated peak memory is above 90 % of the GPU: an out-of-memory is likely." if fits else
                 "The estimated peak memory is more than the GPU has: training will run out of memory."),
                f"estimated peak {est_peak_gib:.1f} GiB of {gpu_total_gib:.1f} GiB ({fraction:.0%})",
                "Lower micro_batch_size (raise gradient_accumulation_steps to keep the effective batch), shorten "
                "max_seq_length, keep gradient_checkpointing on, or use 4-bit (quantization: nf4)."))
    return findings


def preflight(examples: Sequence[TokenizedExample], cfg: Any, *, gpu_bf16: bool | None = None,
              est_peak_gib: float | None = None, gpu_total_gib: float | None = None,
              dropped: Mapping[str, int] | None = None, slop: SlopMatcher | None = None,
              num_gpus: int = 1, planned_steps: tuple[int | None, int | None] | None = None,
              too_long_lengths: Sequence[int] = (), model: Architecture | None = None) -> list[Finding]:
    """Every pre-flight finding, errors first. `blocking(findings)` says whether training may start.

    `dropped` is the data layer's count of rows it left out, by reason (DataReport.dropped); `too_long_lengths`
    the token lengths of the training rows among them dropped as too long (DataReport.too_long_lengths);
    `model` the model's shapes (from its config.json), where read, for the lora settings' check against it.
    """
    examples, dropped = list(examples), dict(dropped or {})
    findings = _check_hardware(cfg, gpu_bf16, est_peak_gib, gpu_total_gib)
    findings += check_lora_for_model(cfg, model)
    findings += check_settings(cfg, len(examples), num_gpus, planned_steps)
    if not examples:
        findings.append(_check_nothing_left(dropped))
    else:
        findings += _check_targets(examples, dropped)
        findings += _check_lengths(examples, cfg.training.max_seq_length, dropped, too_long_lengths)
        findings += _check_size_and_duplicates(examples)
        findings += _check_slop(examples, slop)
        findings += _check_system_prompt(examples)
    return sorted(findings, key=lambda f: -f.rank)
