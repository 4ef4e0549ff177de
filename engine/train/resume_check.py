"""What may change in a run's config.yaml between a checkpoint and `train --resume`.

Each checkpoint carries the config and the data fingerprint it was trained with (rundir.CHECKPOINT_RUN_FILE).
On resume the edited config is compared with it: a setting the Trainer reads afresh (the learning rate, how
often to log, eval and save, how long to train) is applied and said in the log; a setting the checkpoint's
weights, optimizer state or data order depend on (the model, LoRA's shape, the data, the batch plan) is
refused with its key, since resuming under it would fail in a state_dict error or train on something else
without a word. What no config key says (the tokenizer and chat template at the model's path, lorapilot's data
rules) is checked by the tokens themselves: the trainer's examples against the checkpoint's record of them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.adapter_config import lora_module
from engine.config import FIELDS
from engine.errors import UserError, shell_word, yaml_text
from engine.json_file import read_table
from engine.rundir import CHECKPOINT_RUN_FILE, CONFIG_FILE, checkpoint_step

# Read afresh by the Trainer or lorapilot on every start; nothing saved in a checkpoint depends on them.
# training.learning_rate is re-applied to the restored optimizer and schedule (engine.train.callback).
CHANGEABLE = frozenset({
    "training.learning_rate", "training.max_steps", "training.max_grad_norm", "training.gradient_checkpointing",
    "training.logging_steps", "training.eval_steps", "training.save_steps", "training.save_total_limit",
    "training.report_to", "training.stop_on", "training.sample_prompts", "training.sample_max_new_tokens",
    "training.compile",  # speed only: the plan compiles the layers afresh on every start
    "run_name", "runs_dir", "trust_remote_code",
})


def flat_config(cfg) -> dict[str, Any]:
    """{"training.learning_rate": 0.0002, "lora.r": 16, ...}"""
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def data_fingerprint(cfg) -> str:
    """sha256 over the training (and validation) files' bytes, the files the reader reads (a folder's data files,
    not lorapilot's run folders beside them: their metrics grew with the run, and its resume was refused as data
    that changed); a hub dataset by its id."""
    from engine.data.fingerprint import data_sources, hash_file

    h = hashlib.sha256()
    for source, files in data_sources(cfg.dataset):
        h.update(source.encode() if not files else b"")
        for q in files:
            h.update(q.name.encode())
            hash_file(q, h)
    return h.hexdigest()


def run_record(cfg, optimizer: str, processes: int = 1, hub_revisions: dict[str, str] | None = None,
               tokens: dict | None = None) -> dict:
    """What a checkpoint is trained with: written into each checkpoint by the trainer. optimizer: the plan's, which
    may differ from training.optimizer (engine.plan.optimizer_for) and is the one its saved states load into.
    processes: the training processes (training.num_gpus resolved: empty is every visible GPU). hub_revisions: each
    hub dataset's revision the trainer's load read (its DataReport's); None: a load now reads them. tokens: the
    trainer's engine.data.fingerprint.tokens_record of its examples (None: not recorded)."""
    from engine.data.fingerprint import hub_revisions as revisions_read

    return {"config": flat_config(cfg), "data_sha256": data_fingerprint(cfg), "optimizer": optimizer,
            "processes": processes,
            "hub_revisions": revisions_read(cfg.dataset) if hub_revisions is None else dict(hub_revisions),
            **({"tokens": tokens} if tokens is not None else {})}


def checkpoint_optimizer(ckpt: str | Path) -> str:
    """The optimizer whose states a checkpoint saved; "" when its record does not say (written before lorapilot
    recorded it, when the plan ran training.optimizer's bitsandbytes optimizer as named)."""
    record = saved_record(ckpt)
    name = record.get("optimizer") if record else None
    return name if isinstance(name, str) else ""


def saved_record(ckpt: str | Path) -> dict | None:
    record = read_table(Path(ckpt) / CHECKPOINT_RUN_FILE)
    return record if record is not None and isinstance(record.get("config"), dict) else None


def config_changes(ckpt: str | Path, cfg, config_path: str | Path, processes: int | None = None,
                   hub_revisions: dict[str, str] | None = None) -> list[str]:
    """The applied changes as lines ("training.learning_rate 0.003 -> 0.001"); refuses the rest (UserError
    naming each key). Nothing to compare with (a checkpoint written before lorapilot recorded it): [].
    processes: the training processes the resume starts; another count than the checkpoint's is refused under
    training.num_gpus, even where the key reads the same (empty: every visible GPU), since the examples per optimizer
    step, the steps and the data order follow it. hub_revisions: each hub dataset's revision the caller's load read
    (the trainer's); None: a load now reads them (the launcher's check)."""
    saved = saved_record(ckpt)
    if saved is None:
        return []
    now = flat_config(cfg)
    # A key the checkpoint's lorapilot did not have yet trained with its default.
    was = {k: FIELDS[k].default for k in now if k in FIELDS} | saved["config"]
    changed = sorted(k for k in set(now) | set(was) if now.get(k) != was.get(k))
    refused = [f"{k}: {yaml_text(was.get(k))} at {Path(ckpt).name}, now {yaml_text(now.get(k))}" for k in changed
               if k not in CHANGEABLE]
    ran = saved.get("processes")
    if isinstance(ran, int) and processes is not None and ran != processes and "training.num_gpus" not in changed:
        asked = cfg.training.num_gpus
        refused.append(f"training.num_gpus: {'empty (every visible GPU)' if asked is None else asked} trained on "
                       f"{ran} process{'es' if ran != 1 else ''} at {Path(ckpt).name}, and this resume would start "
                       f"{processes}; resume where {ran} GPU{'s are' if ran != 1 else ' is'} visible")
    if saved.get("data_sha256") and saved["data_sha256"] != data_fingerprint(cfg):
        refused.append(f"dataset: the data in {cfg.dataset.path} changed since {Path(ckpt).name} was saved")
    if isinstance(saved.get("hub_revisions"), dict):   # checked by the launcher, and by the trainer after its load
        from engine.data.fingerprint import revision_changes

        refused += [f"dataset: {line}" for line in revision_changes(saved["hub_revisions"], cfg.dataset,
                                                                    f"{Path(ckpt).name} trained on", hub_revisions)]
    if refused:
        raise UserError(f"{config_path}: changed since the checkpoint in ways a resume cannot follow",
                        problems=refused,
                        fix="put these back as they were to resume, or start a new run with the new settings: "
                            f"lorapilot train {shell_word(config_path)}")
    return [f"{k} {yaml_text(was.get(k))} -> {yaml_text(now.get(k))}" for k in changed if k != "run_name"]


def token_changes(ckpt: str | Path, tokens: dict, cfg, config_path: str | Path) -> list[str]:
    """The trainer's check, after its load: the examples it made (`tokens`, engine.data.fingerprint.tokens_record) are
    the ones the checkpoint was trained on, token for token, or the resume is refused (UserError naming what changed
    where the record tells: the tokenizer or chat template at the model's path, lorapilot's data rules, the libraries,
    the counts). config_changes cannot see these: the config and data files read the same, and the resume trained on
    other tokens without a word, its data order and epoch position off. A checkpoint saved before lorapilot recorded
    its tokens is resumed unchecked: the one line returned says so (for train.log)."""
    saved = (saved_record(ckpt) or {}).get("tokens")
    name = Path(ckpt).name
    if not isinstance(saved, dict):
        return [_tokens_unrecorded(name)]
    problems = token_problems(saved, tokens, cfg.model, f"at {name}")
    if problems:
        raise UserError(f"{config_path}: this resume would train on other tokens than {name} was trained on",
                        problems=problems,
                        fix=f"put back what changed to resume, or start a new run on the examples as they are now: "
                            f"lorapilot train {shell_word(config_path)}")
    return []


def token_problems(saved: dict, tokens: dict, model: str, then: str) -> list[str]:
    """What differs between two tokens_record (engine.data.fingerprint): `saved` (as it was `then`: "at checkpoint-30",
    "when the sweep started") and `tokens` (now), for `model` (the config's). [] when the examples are the same, token
    for token; else what made them that changed (the tokenizer or chat template at the model's path, lorapilot's data
    rules, the libraries), then the counts or contents of each split that differ. The one rule of a run's resume
    (token_changes) and a sweep's (engine.sweep.resume.check_same_tokens)."""
    splits = ("train", "validation")
    if all(saved.get(s) == tokens[s] for s in splits):
        return []
    problems = maker_changes(saved, tokens, model, then) or [
        "none of what lorapilot records of how they were made changed (the tokenizer, chat template, data rules, "
        "libraries): train.log's data lines may say why (a chat template that writes the day's date)"]
    for split in splits:
        was, now = saved.get(split) or {}, tokens[split]
        if was.get("count") != now["count"]:
            problems.append(f"{split} examples: {was.get('count')} {then}, {now['count']} now")
        elif was.get("sha256") != now["sha256"]:
            problems.append(f"{split} examples: the same {now['count']}, made of other tokens")
    return problems


def maker_changes(saved: dict, now: dict, model: str, then: str) -> list[str]:
    """One line per maker of the tokens (engine.data.fingerprint.TOKEN_SOURCES) that differs between `saved` (a
    tokens_record, as it was `then`) and `now` (a tokens_record or token_makers), for the config's `model`."""
    from engine.data.fingerprint import TOKEN_SOURCES

    said = {"tokenizer": f"tokenizer: the tokenizer at {model} (its vocabulary or special tokens) changed",
            "chat_template": f"chat template: the chat template at {model} changed",
            "data_rules": f"data rules: lorapilot's data preparation (engine/data) is not the one {then}: it may "
                          "render, mask or keep rows otherwise",
            "libraries": f"libraries: {_versions(saved.get('libraries'))} then, {_versions(now['libraries'])} now"}
    return [said[k] for k in TOKEN_SOURCES if saved.get(k) and saved.get(k) != now[k]]


def _tokens_unrecorded(name: str) -> str:
    return (f"{name} holds no record of the tokens it was trained on (saved by an earlier lorapilot): this resume "
            "cannot check that the tokenizer, chat template and data rules are as they were")


def tokens_now(cfg, revisions: dict[str, str] | None = None) -> dict:
    """The tokens_record of the examples the trainer's load makes for cfg (engine.train.run.load: its tokenizer, then
    its examples), made here without the model. cfg.trust_remote_code: as the caller resolved it. `revisions`: given,
    it gets the revision of each hub dataset this load read (the trainer's DataReport's), for a caller that records
    it with the tokens made of it."""
    from engine.data import load_examples
    from engine.data.fingerprint import tokens_record
    from engine.model import load_tokenizer

    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    data = load_examples(cfg, tokenizer)
    if revisions is not None:
        revisions.update(data.report.hub_revisions)
    return tokens_record(data, tokenizer)


# What a config's examples are made of (tokens_now): the tokenizer at the model's path, as trust_remote_code loads it,
# the data and its rules (dataset.*), the length examples are cut to and the seed that splits off the validation.
TOKEN_KEYS = ("model", "trust_remote_code", "training.max_seq_length", "training.seed")


def token_inputs(cfg) -> dict[str, Any]:
    """The config keys its examples' tokens are made of (TOKEN_KEYS and every dataset.* key), with their values: two
    configs that read the same here make the same examples (a sweep's trials and its base config)."""
    return {k: v for k, v in flat_config(cfg).items() if k in TOKEN_KEYS or k.startswith("dataset.")}


@dataclass(frozen=True)
class TokensMade:
    """tokens_now of a config, made once for every check that needs them: `record`, the tokens_record; `revisions`,
    each hub dataset's revision that load read (config_changes compares them); `inputs`, token_inputs of the config
    they were made for. A check of another config uses them only where its token_inputs read the same."""
    record: dict
    revisions: dict[str, str]
    inputs: dict[str, Any]

    def of(self, cfg) -> TokensMade | None:
        """These tokens where cfg makes the same examples, else None (made afresh by the caller)."""
        return self if token_inputs(cfg) == self.inputs else None


def make_tokens(cfg) -> TokensMade:
    """tokens_now of cfg, with the hub revisions its load read: one read of the rows, one tokenization."""
    revisions: dict[str, str] = {}
    record = tokens_now(cfg, revisions)
    return TokensMade(record, revisions, token_inputs(cfg))


def tokens_of(cfg, data, tokenizer) -> TokensMade:
    """make_tokens of examples already loaded for cfg (engine.data.load_examples with `tokenizer`, as tokens_now
    loads them): for a caller that read them for something else too (the sweep's plan), so that the rows
    are tokenized once."""
    from engine.data.fingerprint import tokens_record

    return TokensMade(tokens_record(data, tokenizer), dict(data.report.hub_revisions), token_inputs(cfg))


def resumed_checkpoint(run_dir: Path) -> tuple[str | None, list[str]]:
    """The checkpoint the trainer resumes from, and why each newer one is skipped (rundir.usable_checkpoint, with the
    pickles checked as the Trainer would load them: unsafe_pickle)."""
    from engine.rundir import usable_checkpoint

    return usable_checkpoint(run_dir, also=unsafe_pickle)


def refuse_before_load(run_dir: Path, cfg, ckpt: str | None = None, *, tokens: dict | None = None) -> list[str]:
    """The trainer's resume refusals that need no model weights, run by the launcher before it starts the trainer
    (`train --resume`, --detach or not, `sweep --resume` for its trials, and its driver), in the trainer's order,
    against the checkpoint it resumes from (resumed_checkpoint): a multimodal model (check_text_decoder_of),
    token_changes on the examples its load would make (tokens_now: the tokenizer and the data, no model), the lora
    targets against config.json (launch.check_lora_for_model, the rule its plan applies) and adapter_changes on the
    adapter its build would make, built on the meta device (engine.model.adapter_on_meta). The trainer's own functions:
    the refusal comes in the foreground, in its words, exit 2, not as a run that failed after --detach had said 0, or
    once a 7B model had loaded. The trainer keeps its checks (the files may change in between). Returns the note
    train.log gets too, of a checkpoint without a record of its tokens (resumed unchecked). cfg.trust_remote_code: as
    the caller resolved it (rundir.check_remote_code). ckpt: the caller's resumed_checkpoint, else looked for here.
    tokens: tokens_now(cfg) as the caller made them (check_resume: once, with the read its other checks need), else
    made here."""
    from engine.estimate.model_config import find_config_json
    from engine.model import adapter_on_meta, check_text_decoder_of
    from engine.train.launch import check_lora_for_model

    ckpt = ckpt or resumed_checkpoint(run_dir)[0]
    if ckpt is None:
        return []
    check_text_decoder_of(cfg.model)
    config_path = run_dir / CONFIG_FILE
    notes = []
    if isinstance((saved_record(ckpt) or {}).get("tokens"), dict):
        notes += token_changes(ckpt, tokens_now(cfg) if tokens is None else tokens, cfg, config_path)
    else:
        notes.append(_tokens_unrecorded(Path(ckpt).name))
    check_lora_for_model(cfg, find_config_json(cfg.model))
    if (Path(ckpt) / "adapter_model.safetensors").is_file() and (model := adapter_on_meta(cfg)) is not None:
        adapter_changes(ckpt, model, cfg, config_path)
    return notes


def _versions(libraries) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((libraries or {}).items())) or "unknown"


# The files of a checkpoint the Trainer unpickles on resume: the optimizer's and scheduler's states, the RNG states
# (one per process) and the AMP scaler. training_args.bin is written but never read back.
RESUMED_PICKLES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt")


def unsafe_pickle(ckpt: Path) -> str | None:
    """A file the resume would unpickle that holds more than tensors and plain values ("<file>: <what>"): torch
    refuses to load such a file (it could run code), and the resume failed with torch's advice to load it unsafely.
    A trainer never writes one: it came from elsewhere or is garbled inside an intact archive, so it is skipped like
    a damaged checkpoint. Checked under the Trainer's own allowlist (transformers' safe_globals, which admits numpy's
    RNG state), memory-mapped so the states are not read twice."""
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals

    for pattern in RESUMED_PICKLES:
        for path in sorted(ckpt.glob(pattern)):
            try:
                with safe_globals():
                    torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except (pickle.UnpicklingError, RuntimeError, ValueError, TypeError, AttributeError, EOFError) as e:
                named = re.search(r"GLOBAL ([\w.]+)", str(e))  # torch names the first global it refused
                what = f" ({named.group(1)})" if named else ""
                return f"{path}: holds objects a trainer does not save{what}; not loaded, it could run code"
    return None


def max_steps_behind(max_steps: int, ckpt: str, config_path: Path, said: str | None = None) -> UserError | None:
    """A run's step count lowered below its last checkpoint (max_steps 20, checkpoint 30): refused, not resumed.
    The resume saved the adapter of step 30 and said "done 30/20", under a config (and so an export card) that
    says 20 steps: the user asked for a shorter run, and no resume goes back to step 20. Set to the checkpoint's step,
    the run finishes now with that checkpoint's adapter, as the refusal says. `said`: where the count comes from,
    when not training.max_steps (the trainer's plan of num_epochs)."""
    at = checkpoint_step(ckpt)
    if max_steps <= 0 or at <= max_steps:
        return None
    return UserError(f"{config_path}: {said or f'training.max_steps is {max_steps}'}, below the run's last checkpoint "
                     f"at step {at}: a resume cannot train back to step {max_steps}",
                     fix=f"set training.max_steps to {at} to finish the run now with the adapter of step {at}, or "
                         "higher to train on, then resume")


ADAPTER_SETTINGS = ("r", "lora_alpha", "use_rslora", "use_dora")   # adapter_config.json keys the weights depend on
# The config keys the adapter's weights are built from, and what adapter_config.json calls them (where it says).
ADAPTER_KEYS = {"model": None, "lora.r": "r", "lora.alpha": "lora_alpha", "lora.target_modules": "target_modules"}


def adapter_changes(ckpt: str | Path, model, cfg, config_path: str | Path) -> None:
    """The trainer's check, once the model and its adapter are built: the adapter is the one the checkpoint saved,
    module for module (the names of its weights and their shapes) and setting for setting (ADAPTER_SETTINGS), or the
    resume is refused (UserError naming the modules added or removed). config_changes cannot see what lorapilot
    resolves from the same config: an earlier lorapilot adapted a mixture's routers under all-linear, and its run's
    resume loaded the checkpoint's router weights into nothing without a word (or failed in the optimizer's load).
    The refusal says why where it can tell: the lora settings in `cfg` (the run's config) edited since the checkpoint
    (adapter_edits), else a router, else the model or how the adapter is built from it.
    A checkpoint without adapter_model.safetensors is left to the Trainer's load."""
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    weights, name = Path(ckpt) / "adapter_model.safetensors", Path(ckpt).name
    if not weights.is_file():
        return
    with safe_open(str(weights), framework="pt") as f:
        was = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if lora_module(k)}
    # LoRA's own weights: peft may save an embedding layer beside them, by what it finds at the model's path
    now = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items() if lora_module(k)}
    saved_config = read_table(Path(ckpt) / "adapter_config.json") or {}
    built = model.peft_config["default"]
    problems = [f"{key}: {yaml_text(saved_config[key])} at {name}, {yaml_text(getattr(built, key, None))} now"
                for key in ADAPTER_SETTINGS if key in saved_config and saved_config[key] != getattr(built, key, None)]
    modules_was, modules_now = _modules(was), _modules(now)
    for what, names in ((f"adapted at {name}, not now", modules_was - modules_now),
                        (f"adapted now, not at {name}", modules_now - modules_was)):
        if names:
            problems.append(f"modules {what}: {_grouped(names)}")
    if reshaped := {lora_module(k) or k for k in was.keys() & now.keys() if was[k] != now[k]}:
        problems.append(f"modules of other shapes than at {name}: {_grouped(reshaped)}")
    if not problems:
        return
    head = f"{config_path}: the adapter this resume builds is not the one {name} was trained as"
    if edits := adapter_edits(ckpt, cfg, saved_config):
        # the adapter's own line of a setting edited says it again (r: 16 at ..., 32 now): the edit's line says it
        echoed = {ADAPTER_KEYS[key] for key, _, _ in edits}
        problems = [p for p in problems if p.split(":", 1)[0] not in echoed]
        raise UserError(f"{head}: the settings it is built from were edited since",
                        problems=[f"{key}: {_value(v)} at {name}, {_value(n)} now" for key, v, n in edits] + problems,
                        fix=f"put back {_and([f'{key}: {_value(v)}' for key, v, _ in edits])} (as at {name}) to "
                            "resume, or start a new run with the new settings: "
                            f"lorapilot train {shell_word(config_path)}")
    from engine.estimate.params import ROUTER_NAMES

    differ = (modules_was ^ modules_now) | reshaped
    if any(set(m.split(".")) & set(ROUTER_NAMES) for m in differ):
        why = ("lorapilot builds it otherwise from the same lora settings now: an earlier one adapted a mixture's "
               "routers under all-linear")
    else:
        why = f"the model at {cfg.model}, or how lorapilot and peft build the adapter from it, changed since"
    raise UserError(f"{head} (the config reads as it did at {name}: {why})", problems=problems,
                    fix="start a new run, with the adapter this lorapilot builds: "
                        f"lorapilot train {shell_word(config_path)}")


def adapter_edits(ckpt: str | Path, cfg, saved_config: dict) -> list[tuple[str, Any, Any]]:
    """(key, at the checkpoint, now) for each config key the adapter is built from (ADAPTER_KEYS) that the run's config
    changed since the checkpoint: by lorapilot's record of its config (run_record), else by its adapter_config.json
    (`saved_config`: r, lora_alpha, and the target modules where the config names them; an earlier lorapilot's
    checkpoint). Target modules compare as sets (peft saves them in its own order)."""
    now = flat_config(cfg)
    record = saved_record(ckpt)
    if record is not None:
        was = {k: FIELDS[k].default for k in ADAPTER_KEYS if k in FIELDS} | record["config"]
    else:
        was = {k: saved_config[peft] for k, peft in ADAPTER_KEYS.items() if peft and peft in saved_config}
        if not isinstance(now["lora.target_modules"], list):   # all-linear: peft saved what it resolved it to
            was.pop("lora.target_modules", None)
        elif isinstance(was.get("lora.target_modules"), list):   # peft saved a set: in no order of the user's
            was["lora.target_modules"] = sorted(was["lora.target_modules"])

    def same(key: str, a, b) -> bool:
        if key == "lora.target_modules" and isinstance(a, list) and isinstance(b, list):
            return set(a) == set(b)
        return a == b

    return [(k, was[k], now[k]) for k in sorted(ADAPTER_KEYS) if k in was and not same(k, was[k], now[k])]


def _value(v) -> str:
    return yaml_text(int(v) if isinstance(v, float) and v.is_integer() else v)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _modules(keys) -> set[str]:
    return {lora_module(k) or k for k in keys}


def _grouped(names: set[str]) -> str:
    """model.layers.*.mlp.gate (24), ...: the same module of every layer said once"""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(re.sub(r"\.\d+(?=\.|$)", ".*", n), []).append(n)
    return ", ".join(f"{p} ({len(of)})" if len(of) > 1 else of[0] for p, of in sorted(groups.items()))
