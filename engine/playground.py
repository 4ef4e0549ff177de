"""Base vs adapter, side by side: one 4-bit base in memory, the adapter switched on and off.

Loading the base once and toggling the adapter (peft's `disable_adapter`)
halves the memory and the load time of loading the model twice.

A conversation is kept by the caller, one history per side (the base model's
earlier answers are not the adapter's): each question is fed after its side's
history as training renders a multi-turn row (engine.data.prompt). What does
not fit the model's context beside the answer is dropped, oldest turn first,
and the caller is told how many.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from engine.data.prompt import Turn
from engine.errors import UserError, shell_word
from engine.rundir import CONFIG_FILE


MAX_NEW_TOKENS = 4096  # a typo must not keep a CPU busy for an hour


def check_sampling(name: str, text: str) -> tuple[Any, str | None]:
    """One sampling setting as typed: (value, None), or (None, what is wrong with it)."""
    stripped = str(text).strip()
    if name == "max_new_tokens":
        if not stripped.isdigit() or not 1 <= int(stripped) <= MAX_NEW_TOKENS:
            return None, f"{stripped or 'empty'}: a whole number from 1 to {MAX_NEW_TOKENS}"
        return int(stripped), None
    try:
        value = float(stripped)
    except ValueError:
        value = math.nan
    if name == "temperature":
        if not math.isfinite(value) or value < 0:
            return None, f"{stripped or 'empty'}: a number >= 0 (0 = greedy)"
        return value, None
    if not math.isfinite(value) or not 0 < value <= 1:
        return None, f"{stripped or 'empty'}: a number above 0, at most 1"
    return value, None


def prompt_style(adapter: Path, cfg):
    """How the run's prompts were rendered: saved with the adapter; for an older run or a checkpoint, from its
    dataset."""
    from engine.data.prompt import PromptStyle, load_style, shared_system_prompt

    saved = load_style(adapter)
    if saved is not None:
        return saved
    try:
        from engine.data import read_rows
        rows, fmt, _ = read_rows(cfg.dataset.path, cfg.dataset.format)
        return PromptStyle(format=fmt, system=shared_system_prompt(rows, fmt))
    except (UserError, OSError):  # the dataset moved since: the alpaca layout, as such runs were prompted
        return PromptStyle()


def prompt_tools(adapter: Path, cfg, trust_remote_code: bool = False):
    """(tokenizer, prompt style) to feed this adapter what training fed it. A final adapter/ holds both; a
    Trainer checkpoint neither: then the run's model's tokenizer and the style from its data, as the trainer
    set them up."""
    from engine.model import load_tokenizer

    tokenizer = load_tokenizer(str(adapter)) if (adapter / "tokenizer_config.json").exists() else \
        load_tokenizer(cfg.model, trust_remote_code)
    return tokenizer, prompt_style(adapter, cfg)


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing that holds an adapter, or None."""
    from engine.rundir import ADAPTER_FILES, complete_checkpoints

    with_adapter = [c for c in complete_checkpoints(run_dir) if all((c / f).is_file() for f in ADAPTER_FILES)]
    return with_adapter[-1] if with_adapter else None


def no_room_to_chat(cfg, gpus: list) -> str | None:
    """Why a second copy of the run's model would not fit beside its trainer now, in words with the numbers;
    None when it fits, or without a GPU (on the CPU the playground loads into the machine's memory).

    gpus: engine.gpu samples. The playground loads on the first GPU, where a one-GPU trainer runs too. Raises
    ModelError when the model's size cannot be read (then nobody can say it fits)."""
    if not gpus:
        return None
    from engine.estimate import read_model_config
    from engine.estimate.chat_memory import chat_need_gib
    from engine.estimate.gpus import spec_for_sample

    first = gpus[0]
    # Its card even without a preset: the playground loads on that GPU, never on the CPU, while there is one.
    need = chat_need_gib(cfg, read_model_config(cfg.model), spec_for_sample(first))
    free = first.mem_total_gib - first.mem_used_gib
    if free > need:
        return None
    return (f"Chatting needs about {need:.1f} GiB on the GPU (the base weights, the adapter and a cache for "
            f"a long answer), and GPU {first.index} has {free:.1f} GiB free ({first.mem_used_gib:.1f} of "
            f"{first.mem_total_gib:.1f} GiB in use). A second model could take the memory the run needs.")


def chat_target(run_dir: str | Path, *, adapter: str | Path | None = None, trust_remote_code: bool = False):
    """(the run's config, whether to trust remote code, the adapter directory): every check a chat makes before
    any model loads, quick and without torch, so that a folder that is no run is refused before "loading"."""
    from engine.config import load_config
    from engine.export import adapter_dir
    from engine.rundir import check_remote_code

    from engine.rundir import require_run_dir

    rd = require_run_dir(run_dir)
    cfg = load_config(rd / CONFIG_FILE)
    trust = check_remote_code(cfg, rd, trust_remote_code, f"chat {shell_word(rd)}")
    from engine.export.facts import check_trained_adapter, trained_config

    ad = adapter_dir(rd) if adapter is None else Path(adapter)
    if adapter is not None:
        check_trained_adapter(rd, ad, cfg)   # a checkpoint's, as the final adapter is checked
    # The base loaded as the run trained it (quantization, precision), whatever config.yaml was edited to since.
    return trained_config(rd, cfg)[0], trust, ad


def fit_history(ids_for: Callable[[Sequence[Turn]], list[int]], history: Sequence[Turn],
                room: int | None) -> tuple[list[int], int]:
    """(ids, how many of the oldest turns were left out): the question after as much of its history as fits in
    `room` tokens (None: all of it). The question alone is fed even where it does not fit: then the model says."""
    turns = list(history)
    for dropped in range(len(turns) + 1):
        ids = ids_for(turns[dropped:])
        if room is None or len(ids) <= room:
            return ids, dropped
    return ids, len(turns)


def dropped_turns_note(dropped: int, context: int | None, max_new_tokens: int) -> str:
    """What the playground and `lorapilot chat` say when the oldest turns of a conversation were left out."""
    turns = "turn" if dropped == 1 else f"{dropped} turns"
    size = f"{context:,} tokens, " if context else ""
    return (f"the oldest {turns} of this conversation no longer fit the model's context ({size}"
            f"{max_new_tokens:,} of them kept for the answer): left out")


def _rotated_away(ckpt: Path) -> UserError:
    return UserError(f"{ckpt}: its files are gone: the run deletes its oldest checkpoints as it saves new ones "
                     "(training.save_total_limit)", fix="open the playground again: it opens the newest checkpoint")


def hold_checkpoint(ckpt: Path):
    """(a temporary folder, the copy in it): a copy of the checkpoint's adapter (and its run record) in a folder of
    the checkpoint's name; UserError where its files are gone (rotated away since it was chosen). The checks are
    the real folder's (chat_target): the copy holds two of its files, and is deleted once read."""
    import shutil
    import tempfile

    from engine.rundir import ADAPTER_FILES, CHECKPOINT_RUN_FILE

    held = tempfile.TemporaryDirectory(prefix="lorapilot-checkpoint-")
    copy = Path(held.name) / ckpt.name
    copy.mkdir()
    try:
        for name in ADAPTER_FILES:
            shutil.copyfile(ckpt / name, copy / name)
        if (ckpt / CHECKPOINT_RUN_FILE).is_file():
            shutil.copyfile(ckpt / CHECKPOINT_RUN_FILE, copy / CHECKPOINT_RUN_FILE)
    except FileNotFoundError:
        held.cleanup()
        raise _rotated_away(ckpt) from None
    return held, copy


class Playground:
    def __init__(self, run_dir: str | Path, *, adapter: str | Path | None = None, trust_remote_code: bool = False):
        """adapter: the adapter directory to chat with (a checkpoint of a run still training); default the run's
        final adapter/. trust_remote_code: the user said so on the command line; the run's config.yaml alone
        never runs code."""
        # A checkpoint is read now, into a folder of its own: the trainer's rotation (training.save_total_limit)
        # deletes it once newer ones are saved, and the base may take minutes to load before the adapter is read.
        from engine.rundir import ADAPTER_FILES

        if adapter is not None and not all((Path(adapter) / name).is_file() for name in ADAPTER_FILES):
            raise _rotated_away(Path(adapter))   # not "copy the run directory again": the rotation's rmtree
        self.cfg, trust, ad = chat_target(run_dir, adapter=adapter, trust_remote_code=trust_remote_code)
        self._held = None
        if adapter is not None:   # checked where it is; read from a copy
            self._held, ad = hold_checkpoint(ad)
        from peft import PeftModel

        from engine.model import load_base_model, unquantised_as_trained

        self.tokenizer, self.style = prompt_tools(ad, self.cfg, trust)
        base, _ = load_base_model(self.cfg.model, self.cfg.quantization, self.cfg.training.precision,
                                  trust_remote_code=trust)
        unquantised_as_trained(base, self.cfg.quantization)   # the trainer's residual stream on an fp16 GPU
        self.model = PeftModel.from_pretrained(base, str(ad)).eval()
        if self._held is not None:   # its weights are in the model now
            self._held.cleanup()
        context = getattr(self.model.config, "max_position_embeddings", None)
        self.context: int | None = context if isinstance(context, int) and context > 0 else None
        from engine.data.prompt import system_left_out, system_refused, template_system_prompt
        self.template_system = template_system_prompt(self.tokenizer, self.style.format)
        # training's system prompt is in none of its rows (the template writes it into a last user turn only)
        self.system_left_out = system_left_out(self.tokenizer, self.style)
        # why a system prompt of the user's is refused, as training refuses a row with one (None: it is not)
        self.system_refused = system_refused(self.tokenizer, self.style.format)
        from engine.data.stops import unknown_stops_note
        # offline, a checkpoint's tokenizer (the base model's) may lack the stops its makers publish: said
        self.stops_note = unknown_stops_note(self.tokenizer)

    def prompt_ids(self, text: str, history: Sequence[Turn] = (), system: str = "") -> list[int]:
        from engine.data.prompt import prompt_ids
        return prompt_ids(self.tokenizer, text, self.style, history, system)[0]

    def stream(self, text: str, *, adapter: bool, history: Sequence[Turn] = (), system: str = "",
               dropped: Callable[[int], None] | None = None, temperature: float = 0.0, top_p: float = 1.0,
               max_new_tokens: int = 128) -> Iterator[str]:
        """Yields the answer piece by piece as it is generated, as the model wrote it: what a follow-up feeds back
        in `history`. A model can generate any byte, an escape sequence included: escape the pieces
        (rundir.safe_text) before they reach a terminal, and keep them raw for the history.

        history: this side's earlier (question, answer) turns (a chat format only); those that do not fit the
        context beside max_new_tokens are left out, oldest first, and `dropped` is called with how many."""
        from engine.samples import generate

        streamer = _answer_streamer(self.tokenizer)
        room = self.context - max_new_tokens if self.context is not None else None
        ids, left_out = fit_history(lambda turns: self.prompt_ids(text, turns, system), history, room)
        if left_out and dropped is not None:
            dropped(left_out)
        errors: list[BaseException] = []

        def work():
            try:
                if adapter:
                    generate(self.model, self.tokenizer, ids, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, streamer=streamer)
                else:
                    with self.model.disable_adapter():
                        generate(self.model, self.tokenizer, ids, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, streamer=streamer)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]

    def answer(self, text: str, *, adapter: bool, **kw) -> str:
        return "".join(self.stream(text, adapter=adapter, **kw)).strip()


def _answer_streamer(tokenizer):
    """transformers' TextIteratorStreamer whose last piece drops a cut's partial character (samples.py's rule):
    it holds back text after the last space until the end, so only the last piece can end in one."""
    from transformers import TextIteratorStreamer

    from engine.samples import without_cut_character

    class AnswerStreamer(TextIteratorStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            super().on_finalized_text(without_cut_character(text) if stream_end else text, stream_end)

    return AnswerStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
