"""What an export needs to know about a finished run, read from its run directory (never written to it).

The run's config, its adapter, the tokenizer it trained with (saved with the adapter), the data it read, and
how training went (steps, losses, the learning-curve verdict, hardware, time). The model card and the Ollama
Modelfile are written from this.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import Config
from engine.errors import DataError, UserError, shell_word
from engine.run_clock import run_elapsed
from engine.rundir import (CONFIG_FILE, LOG_FILE, last_checkpoint, load_status, open_regular,
                           planned_steps, read_metrics, require_run_dir, steps_trained)


@dataclass
class DataFacts:
    path: str
    format: str = "unknown"
    rows: int | None = None
    template: str = "unknown"
    system_prompt: str | None = None     # the one system prompt every row shares, if they do
    notes: list[str] = field(default_factory=list)


@dataclass
class RunFacts:
    run_dir: Path
    cfg: Config
    adapter: Path
    base_model: str                      # as the config names it (hub id or path)
    base_path: str                       # where it loads from here
    step: int | None = None              # None: nothing in the run directory says (the card says "unknown")
    max_steps: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    best_eval: tuple[int, float] | None = None
    verdict: str | None = None           # the learning-curve finding's message
    hardware: str | None = None
    seconds: float | None = None
    optimizer: str | None = None         # the optimizer the trainer ran (its plan), where it says
    packed: bool | None = None           # whether its plan packed the rows, where it says (None: the config's)
    data: DataFacts = field(default_factory=lambda: DataFacts(path=""))

    @property
    def name(self) -> str:
        return model_name(self.run_dir)


def model_name(run_dir: Path) -> str:
    """The run's folder name as a model name Ollama and vLLM accept (lower case, no spaces)."""
    return re.sub(r"[^a-z0-9._-]+", "-", Path(run_dir).resolve().name.lower()).strip("-.") or "lorapilot-model"


def load_run_config(run_dir: Path):
    from engine.config import load_config

    require_run_dir(run_dir)
    return load_config(run_dir / CONFIG_FILE)


def _base_path(model: str) -> str:
    """Where the run's model loads from here, as the trainer handed it to transformers (peft records that string as
    the adapter's base_model_name_or_path); the demo's folder without building it."""
    from engine.demo.model import DEMO_MODEL_ID, demo_model_dir
    from engine.model import ModelError, resolve_model_path

    if model == DEMO_MODEL_ID:
        return str(demo_model_dir())
    try:
        return resolve_model_path(model)
    except ModelError:   # a folder that is not there: said where the model loads
        return model


def _same_model(recorded: str, model: str) -> bool:
    here = _base_path(model)
    if recorded in (model, here):
        return True
    a, b = Path(recorded).expanduser(), Path(here).expanduser()
    try:
        return a.is_dir() and b.is_dir() and a.samefile(b)
    except OSError:
        return False


def check_trained_adapter(run_dir: Path, adapter: Path, cfg) -> None:
    """Refuses (UserError) an adapter that is not whole as its trainer wrote it (engine.rundir.adapter_problem), or
    that was trained on another base than config.yaml names now: chat and export load config.yaml's model under it,
    and a config.yaml (or an adapter_config.json) edited by hand since would have them answer, merge and serve with
    a base the adapter never saw, without an error."""
    from engine.adapter_config import read_adapter_config
    from engine.rundir import ADAPTER_FILES, adapter_problem, safe_text

    problem = adapter_problem(adapter)
    if problem:
        # The two files the trainer's last save writes: a resume writes them again (a trainer killed while saving)
        resaved = adapter.parent == run_dir and problem.startswith(tuple(str(adapter / n) for n in ADAPTER_FILES))
        again = f"lorapilot train --resume {shell_word(run_dir)} saves it again from the run's last checkpoint; or "
        raise UserError(safe_text(f"{adapter}: the adapter is not as its run saved it: {problem}", one_line=True),
                        fix=safe_text((again if resaved else "")
                                      + "copy the run directory again from where it trained", one_line=True))
    saved = read_adapter_config(adapter) or {}
    _check_scale(run_dir, adapter, cfg, saved)
    recorded = saved.get("base_model_name_or_path")
    if isinstance(recorded, str) and recorded and not _same_model(recorded, cfg.model):
        raise UserError(safe_text(f"{run_dir / CONFIG_FILE}: model: {cfg.model} is not the base the adapter was "
                                  f"trained on ({recorded}, its base_model_name_or_path in "
                                  f"{adapter / ADAPTER_FILES[0]})", one_line=True),
                        fix=safe_text(f"put model: back as the run trained ({recorded}); if {cfg.model} is that same "
                                      "model in another place (a run copied from another machine), write its place "
                                      f"into base_model_name_or_path in {adapter / ADAPTER_FILES[0]} too",
                                      one_line=True))


def _check_scale(run_dir: Path, adapter: Path, cfg, saved: dict) -> None:
    """The adapter's r and lora_alpha (its update is scaled by alpha / r) as the run trained them (engine.config's
    lora, which no resume may change: its newest checkpoint's record, else config.yaml): one edited in either file
    since had chat and export apply the adapter at another strength than it trained at, without an error."""
    import math

    from engine.rundir import ADAPTER_FILES, safe_text

    trained = trained_config(run_dir, cfg)[0].lora
    for key, name, value in (("r", "lora.r", trained.r), ("lora_alpha", "lora.alpha", trained.alpha)):
        mine = saved.get(key)
        if isinstance(mine, (int, float)) and not isinstance(mine, bool) and not math.isclose(mine, value):
            raise UserError(safe_text(f"{adapter / ADAPTER_FILES[0]}: {key} {mine:g} is not the {name} {value:g} the "
                                      f"run trained with ({run_dir / CONFIG_FILE}, as its checkpoints recorded it): "
                                      "one of them was edited since, and the adapter would be applied at another "
                                      "strength than it trained at", one_line=True),
                            fix="put the one edited back as it was; if unsure, copy the run directory again from "
                                "where it trained")


def finished_adapter(run_dir: Path) -> Path:
    from engine.rundir import ADAPTER_DIR, refuse_links

    # a typo, or a folder that is no run, read 'has no finished adapter' and advised resuming a run that is not there
    require_run_dir(run_dir)
    ad = run_dir / ADAPTER_DIR
    if not (ad / "adapter_config.json").exists():
        raise UserError(f"{run_dir}: has no finished adapter ({ad} is missing)",
                        fix="wait for the run to finish, or resume it: lorapilot train --resume " + shell_word(run_dir))
    # A run directory may come from anyone: a link in its adapter would have the export copy the file it points to
    # (the user's key, say) into a folder made to be published.
    refuse_links(ad, itself=True, why="the adapter is read, and copied by an export, as the run's own files: "
                                      "through a link a file that is not the run's would be taken instead",
                 fix="remove the link: an adapter is only the files its run wrote, and a link is none of them")
    check_trained_adapter(run_dir, ad, load_run_config(run_dir))
    return ad


def run_tokenizer(adapter: Path):
    """The tokenizer the run trained with, chat template included, as the trainer set it up (pad = EOS if none)."""
    from engine.model import load_tokenizer

    return load_tokenizer(str(adapter))


def shared_system_prompt(rows: list[dict], fmt: str) -> tuple[str | None, str | None]:
    """(the system prompt every row has, a note when rows differ). Rows without one count as differing."""
    def system_of(row: dict) -> str | None:
        if fmt == "chat":
            first = (row.get("messages") or [{}])[0]
            return first.get("content") if first.get("role") == "system" else None
        return row.get("system") or None

    found = {system_of(r) for r in rows}
    if found == {None} or not rows:
        return None, None
    if len(found) == 1:
        return found.pop(), None
    return None, (f"the rows use {len(found - {None})} different system prompts"
                  + (" (some none)" if None in found else "") + ": no default system prompt is set")


def _clock_note(tokenizer) -> str | None:
    """What an export says of a saved template that still reads the clock (engine/data/template_date.py): an adapter
    saved before lorapilot pinned the date, or a clock it cannot pin (the data report said so then)."""
    from engine.data.template import model_chat_template
    from engine.data.template_date import FIXED_DAY, pin_date

    template = model_chat_template(tokenizer)
    if not template:
        return None
    pinned, why = pin_date(template)
    if pinned == template:
        return why
    return ("this adapter was saved before lorapilot fixed the date its chat template writes (strftime_now): its "
            "training rows carry the day they were rendered on, while this export's template, like lorapilot's "
            f"playground and chat, writes {FIXED_DAY.strftime('%d %b %Y')} (the adapter's own saved template, "
            "served as it is by vLLM, llama.cpp or transformers, writes the day they serve): each prompt's date may "
            "differ from training's by a few tokens")


def _history_note(tokenizer, rows: list[dict], fmt: str) -> str | None:
    """What an export says when rows of several answers reach a served model otherwise than training: a server
    tokenizes the whole conversation, training each answer alone (engine/data/masking.py's seam rule), and a
    SentencePiece tokenizer's word-start `▁` makes the earlier answers' ids differ ("▁Yellow." after "[/INST]" in
    training, "Y" "ellow." served). Found by tokenizing the first row of several answers both ways, up to its last
    answer; None when they agree or every row has one answer."""
    from engine.data import IGNORE_INDEX, tokenize_rows
    from engine.data.masking import prefix_space_id

    if fmt != "chat" or prefix_space_id(tokenizer) is None:
        return None
    several = next((row["messages"] for row in rows
                    if sum(m.get("role") == "assistant" for m in row.get("messages") or []) > 1), None)
    if several is None:
        return None
    last = max(i for i, m in enumerate(several) if m.get("role") == "assistant")
    try:
        (ex,) = tokenize_rows([{"messages": several}], "chat", ["row"], tokenizer, max_seq_length=1_000_000)
        served = tokenizer.apply_chat_template(several[:last], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    except (DataError, ValueError):  # a row the template refuses: the data report says so
        return None
    starts = [i for i in range(1, len(ex.labels)) if ex.labels[i] != IGNORE_INDEX and ex.labels[i - 1] == IGNORE_INDEX]
    if not starts or list(served) == ex.input_ids[: starts[-1]]:
        return None
    return ("in rows of several answers, a server (vLLM, llama.cpp, Ollama, transformers) tokenizes the earlier "
            "answers as part of the whole conversation, while training tokenized each answer alone: this tokenizer "
            "then reads their first word otherwise (a word-start space token), so a served multi-turn chat shows the "
            "model its history a little differently from training (a first question's prompt is the same)")


def _data_facts(cfg, tokenizer) -> DataFacts:
    from engine.data import read_rows
    from engine.data.template import Renderer

    from engine.data.prefill import template_note

    facts = DataFacts(path=str(cfg.dataset.path))
    # the tokenizer's, whatever the data: what a server renders differently
    facts.notes += [n for n in (template_note(tokenizer), _clock_note(tokenizer)) if n]
    try:
        rows, fmt, _ = read_rows(cfg.dataset.path, cfg.dataset.format)
    except UserError as e:
        facts.notes.append(f"the dataset could not be read now ({e}); its rows and system prompt are not known")
        return facts
    if cfg.dataset.max_examples:
        rows = rows[: cfg.dataset.max_examples]
    facts.format, facts.rows = fmt, len(rows)
    facts.template = Renderer(tokenizer, cfg.dataset.train_on).name(fmt)
    facts.system_prompt, note = shared_system_prompt(rows, fmt)
    facts.notes += [n for n in (note, _history_note(tokenizer, rows, fmt)) if n]
    return facts


def _hardware_line(run_dir: Path) -> str | None:
    try:  # a train.log that is a named pipe or a device (a run directory from elsewhere) says nothing
        with io.TextIOWrapper(open_regular(run_dir / LOG_FILE), encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"\[lorapilot\] hardware: (.*)", line.strip())
                if m:
                    return m.group(1)
    except OSError:
        return None
    return None


def _ran_optimizer(status: dict | None) -> str | None:
    """The optimizer the trainer's plan ran (status.json), which is not always the config's: paged AdamW needs a
    GPU (the CPU runs torch's AdamW) and the GPU's fast path runs it as torch's fused AdamW."""
    plan = (status or {}).get("plan")
    opt = plan.get("optimizer") if isinstance(plan, dict) else None
    return opt if isinstance(opt, str) and opt else None


def _ran_packed(status: dict | None) -> bool | None:
    """Whether the trainer's plan packed the rows (status.json): a model whose layers carry state across a packed
    row trains padded whatever training.packing says (engine.plan.packing_for)."""
    plan = (status or {}).get("plan")
    packed = plan.get("packing") if isinstance(plan, dict) else None
    return packed if isinstance(packed, bool) else None


def _training_facts(facts: RunFacts, records: list[dict], status: dict | None = None) -> None:
    from engine.diagnose.live import diagnose_records

    from engine.rundir import record_number

    train = [n for r in records if r.get("kind") == "train" and (n := record_number(r, "loss")) is not None]
    evals = [(r["step"], n) for r in records if r.get("kind") == "eval"
             and (n := record_number(r, "eval_loss")) is not None]
    facts.train_loss = train[-1] if train else None
    facts.eval_loss = evals[-1][1] if evals else None
    if evals:
        facts.best_eval = min(evals, key=lambda e: e[1])
    # Each life from its launch (start-up included, as the estimate counts it) to its last record.
    seconds = run_elapsed(status, records)
    facts.seconds = seconds if seconds else None
    facts.optimizer = _ran_optimizer(status)
    facts.packed = _ran_packed(status)
    curve = [f for f in diagnose_records(records) if f.code == "learning_curve"]
    # The verdict at the latest evaluation (re-said at every one), labelled with its step.
    facts.verdict = (f"{curve[-1].message.removeprefix('Learning curve: ')} (evaluation at step {curve[-1].step})"
                     if curve else None)


# Keys of config.yaml that say nothing of how the adapter was trained (the model is checked against the adapter).
_NOT_TRAINING = frozenset({"model", "run_name", "runs_dir", "trust_remote_code"})


def trained_config(run_dir: Path, cfg: Config) -> tuple[Config, str | None]:
    """(the config the run's last trainer read, as its newest checkpoint recorded it; a note naming what
    config.yaml says otherwise now, or None). config.yaml is read by no trainer once it started: edited by hand
    after the run, the model card described settings the adapter never trained with (r 8 of an r 16 adapter).
    config.yaml itself where no checkpoint recorded one (deleted, or saved by a lorapilot before the record)."""
    from engine.config import config_from_dict
    from engine.errors import yaml_text
    from engine.rundir import CHECKPOINT_RUN_FILE
    from engine.train.resume_check import flat_config, saved_record

    newest = last_checkpoint(run_dir)
    record = saved_record(newest) if newest else None
    if newest is None or record is None:
        return cfg, None
    ckpt = Path(newest)
    raw: dict = {}
    for key, value in record["config"].items():
        head, _, tail = key.partition(".")
        if tail:
            raw.setdefault(head, {})[tail] = value
        else:
            raw[key] = value
    try:
        trained = config_from_dict(raw, source=str(ckpt / CHECKPOINT_RUN_FILE))
    except UserError:   # a record of another lorapilot's keys: config.yaml, as before the record
        return cfg, None
    was, now = flat_config(trained), flat_config(cfg)
    changed = [f"{k} {yaml_text(was.get(k))} -> {yaml_text(now.get(k))}" for k in sorted(set(was) | set(now))
               if k not in _NOT_TRAINING and was.get(k) != now.get(k)]
    if not changed:
        return cfg, None
    trained.model = cfg.model
    return trained, (f"{CONFIG_FILE} was edited after the run trained ({'; '.join(changed)}): this card says what "
                     f"the run trained with, as {ckpt.name} recorded it")


def run_facts(run_dir: str | Path, *, need_data: bool = True) -> RunFacts:
    from engine.model import resolve_model_path

    rd = Path(run_dir)
    adapter = finished_adapter(rd)
    cfg, edited = trained_config(rd, load_run_config(rd))
    # A corrupt status.json is refused (exit 2, naming it) before anything is written: the card would say 0 steps.
    status = load_status(rd)
    records = read_metrics(rd)
    # Without status.json (deleted, copied without it) the steps come from the checkpoints and metrics.jsonl.
    facts = RunFacts(run_dir=rd, cfg=cfg, adapter=adapter, base_model=cfg.model,
                     base_path=resolve_model_path(cfg.model), step=steps_trained(rd, status, records),
                     max_steps=planned_steps(status, last_checkpoint(rd)), hardware=_hardware_line(rd))
    _training_facts(facts, records, status)
    facts.data = _data_facts(cfg, run_tokenizer(adapter)) if need_data else DataFacts(path=str(cfg.dataset.path))
    facts.data.notes += [edited] if edited else []
    return facts
