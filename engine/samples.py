"""Generated samples: what the model says, not only how its loss moves.

Prompts are the ids training fed before an answer: for a held-out row, the
ids before its first answer, taken from the tokenized example itself; for a
typed prompt (training.sample_prompts, the playground, chat), the same
renderer, system prompt and BOS as training (engine.data.prompt). So a sample
shows what the adapter learned to answer. Used at each evaluation by the
trainer and by the playground.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass

from engine.data.types import TokenizedExample
from engine.data.stops import stop_token_ids  # what training trained to end on, and the EOS
from engine.settings import FAST_DECODE_ENV

DEFAULT_SAMPLE_PROMPTS = 3  # held-out validation prompts when the config names none
# Which decoder greedy batches use: unset or "auto" lets the trainer choose (engine.train.sample_budget),
# "0" model.generate, "1" engine.fast_decode compiled into CUDA graphs on a GPU, "eager" the same loop uncompiled.
_fast_decode_broken = False  # it raised once in this process: later batches go straight to generate


@dataclass
class SamplePrompt:
    text: str            # what the user wrote (shown in the monitor)
    ids: list[int]       # rendered with the training template, ending where the answer starts
    reference: str = ""  # the held-out answer, when the prompt came from the validation set


def prompt_part(ex: TokenizedExample) -> list[int]:
    """The ids before the example's first answer: exactly what training fed before it."""
    return list(ex.input_ids[: ex.prompt_len])


def from_text(tokenizer, text: str, style=None) -> SamplePrompt:
    """A typed prompt rendered as training renders a row of the data's format (engine.data.prompt)."""
    from engine.data.prompt import PromptStyle, prompt_ids

    ids, _ = prompt_ids(tokenizer, text, style or PromptStyle())
    return SamplePrompt(text=text, ids=ids)


def choose_prompts(cfg, tokenizer, validation: list[TokenizedExample], style=None) -> list[SamplePrompt]:
    """training.sample_prompts, else the first held-out rows that have a prompt (text rows have none), each prompt once.

    A held-out row is fed the ids before its first answer (for a multi-turn row: the system prompt and first
    user turn), and shown with that user turn and that answer.
    """
    if cfg.training.sample_max_new_tokens <= 0:
        return []
    if cfg.training.sample_prompts:
        return [from_text(tokenizer, p, style) for p in cfg.training.sample_prompts]
    # the user's own words where the format has them: the rendered prompt carries the template's markup
    # each prompt once: greedy decoding answers a repeated one (data with duplicates) the same way every time
    distinct: dict[tuple[int, ...], TokenizedExample] = {}
    for ex in validation:
        if ex.prompt_text and ex.prompt_len:
            distinct.setdefault(tuple(prompt_part(ex)), ex)
    return [SamplePrompt(text=ex.question or ex.prompt_text, ids=prompt_part(ex), reference=ex.response_text)
            for ex in list(distinct.values())[:DEFAULT_SAMPLE_PROMPTS]]


def without_cut_character(text: str) -> str:
    """Generated text without the partial character a max_new_tokens cut can leave at its end.

    A byte-level tokenizer may spend several tokens on one character; cut between them, the trailing bytes decode
    to one U+FFFD (a decoder replaces a truncated sequence with one). That one is dropped rather than shown; a
    U+FFFD anywhere else is in the text itself and stays. Every path that shows generated text (training samples,
    the playground, `lorapilot chat`) ends with this.
    """
    return text[:-1] if text.endswith("\ufffd") else text


def decode_generated(tokenizer, ids) -> str:
    """Generated ids as the text shown: special tokens skipped, a cut's partial character dropped, stripped."""
    return without_cut_character(tokenizer.decode(ids, skip_special_tokens=True)).strip()


def generate(model, tokenizer, prompt_ids: list[int], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, streamer=None) -> str:
    """Greedy (temperature 0) or sampled continuation, decoded without special tokens."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    kwargs = dict(do_sample=False) if temperature <= 0 else dict(do_sample=True, temperature=temperature, top_p=top_p)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id,
                             use_cache=True, streamer=streamer, **kwargs)
    return decode_generated(tokenizer, out[0, ids.shape[1]:])


def generate_greedy_batch(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int,
                          way: str | None = None) -> list[str]:
    """Greedy continuations of several prompts in one generate call (left-padded).

    One call instead of one per prompt: decoding a 4-bit model with adapters is bound by the
    per-token launch cost, which a batch of a few prompts shares. way "compile" or "eager" (default: what
    LORAPILOT_FAST_DECODE names, else generate) takes the greedy tokens from engine.fast_decode's loop instead;
    generate remains the fallback.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    way = way or forced_decoder() or "generate"
    if way != "generate" and not _fast_decode_broken:
        rows = _fast_greedy_batch(model, tokenizer, prompts, max_new_tokens=max_new_tokens, pad=pad,
                                  compile=way == "compile")
        if rows is not None:
            return [decode_generated(tokenizer, row) for row in rows]
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.no_grad(), _attention(model, "sdpa"):
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_token_ids(tokenizer), pad_token_id=pad, use_cache=True)
    return [decode_generated(tokenizer, row[width:]) for row in out]


def forced_decoder() -> str | None:
    """The decoder LORAPILOT_FAST_DECODE names ("generate", "compile", "eager"), or None: unset or "auto"."""
    value = os.environ.get(FAST_DECODE_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "false", "no", "off", "generate"):
        return "generate"
    return "eager" if value == "eager" else "compile"


def fast_decode_broken() -> bool:
    """Fast decode raised once in this process, and every batch since has used generate."""
    return _fast_decode_broken


def _fast_greedy_batch(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, pad: int,
                       compile: bool) -> list[list[int]] | None:
    """The fast loop's token rows, or None where it failed: samples must never stop a training run."""
    global _fast_decode_broken
    from engine.fast_decode import greedy_decode

    try:
        with _attention(model, "sdpa"):
            return greedy_decode(model, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_token_ids(tokenizer),
                                 pad_id=pad, compile=compile)
    except Exception as e:  # noqa: BLE001 - warned, then model.generate; e.g. an architecture whose cache or forward differs from Llama's
        _fast_decode_broken = True
        warnings.warn(f"{FAST_DECODE_ENV}: fast decoding failed ({type(e).__name__}: {e}); "
                      "samples use model.generate from now on", RuntimeWarning, stacklevel=2)
        return None


@contextlib.contextmanager
def _attention(model, impl: str):
    """Decoding through SDPA while training uses flex or varlen attention: flex would compile for every new length,
    and varlen's kernel takes packed rows' boundaries, which a padded prompt batch has not."""
    old = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switched = False
    if old and old != impl and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(impl)
            switched = True
        except Exception:  # noqa: BLE001 - an architecture without SDPA: decode as configured
            pass
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation(old)


def sample_all(model, tokenizer, prompts: list[SamplePrompt], max_new_tokens: int,
               way: str | None = None) -> list[dict]:
    """One record body per prompt; the model is left in the mode it was in. way: generate_greedy_batch's.

    gen_s: the batch's generation time shared equally among its prompts.
    """
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        texts = generate_greedy_batch(model, tokenizer, [p.ids for p in prompts], max_new_tokens=max_new_tokens,
                                      way=way)
        each = round((time.perf_counter() - t0) / len(prompts), 3)
    finally:
        if was_training:
            model.train()
    # reference: the held-out answer, for reading the output against it (prompts from the config have none)
    return [{"prompt": p.text, "output": text, "gen_s": each, **({"reference": p.reference} if p.reference else {})}
            for p, text in zip(prompts, texts)]
