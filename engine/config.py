"""The config schema: every field's default, range and help text, in one place.

The wizard's labels and hints, the validator's messages and the README table
all read the same definitions (`FIELDS`). Defaults follow the seeds' QLoRA
recipe. Validation reports every problem at once, each with its dotted key
path and the allowed range, before anything heavy is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from engine.errors import ConfigError, quote, type_word, yaml_text
from engine.learning_rate import LORA_TYPICAL, RECOMMENDED_TEXT
from engine.lora_scale import MAX_TEXT as ALPHA_MAX_TEXT
from engine.lora_scale import RECOMMENDED_TEXT as ALPHA_RECOMMENDED_TEXT
from engine.lora_scale import alpha_advice, alpha_problem

# Upper bounds that no real run reaches but that keep every value inside what the trainer's libraries take
# (a seed above 2**32 - 1 is refused by numpy; 10**400 steps overflow torch's int64): a value the validator
# accepts must never fail after the trainer has been detached.
MAX_STEPS = 10_000_000
MAX_SEED = 2**32 - 1
# An upper bound this large only keeps a value inside what the libraries take (dataset.max_examples); no run comes
# near it, so a hint leaves it out ("allowed >= 1", not "allowed [1, 1000000000000]"). A value past it names it.
NO_PRACTICAL_LIMIT = 10**12
# transformers' logging integrations (transformers.integrations.INTEGRATION_TO_CALLBACK; a test checks the
# two agree) plus its two words "all" and "none".
# An `empty` of opt() not given: an empty value stands for nothing of its own (refused, or None where nullable).
class _NotSet:
    def __repr__(self) -> str:
        return "NOT_SET"


NOT_SET: Any = _NotSet()
REPORT_TO = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow", "mlflow",
             "neptune", "swanlab", "tensorboard", "trackio", "wandb", "all", "none")


def opt(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False, hi_open: bool = False, choices: tuple | None = None,
        recommended: str | None = None, rec: tuple[float, float] | None = None, kind: type | tuple | None = None,
        nullable: bool = False, group: str = "", item_choices: tuple | None = None, also: tuple = (),
        hi_text: str | None = None, empty: Any = NOT_SET, empty_means: str = "") -> Any:
    """A schema field: default plus what the validator and the wizard need.

    `rec` is the recommended range as numbers (from the seeds): valid outside it, but worth a warning.
    `item_choices`: for a list field, what each entry may be.
    `also`: values allowed outside lo..hi, each a word of its own (max_steps' -1: "derive it"), so that no value
    between them (0) silently means the same.
    `hi_text`: an upper bound that depends on another field ("32 x r"), shown in the range; the cross-checks check it.
    `empty`: what a value left empty (an emptied wizard field, `key:` or `key: null` in the file) stands for, where it
    stands for something (max_steps: -1); `empty_means` says it in words for an empty field ("from num_epochs"), for
    these and for a nullable field's None.
    Returns `dataclasses.field(...)`, typed Any as dataclasses' own `field` is, so it can stand as any default.
    """
    meta = dict(help=help, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, choices=choices,
                recommended=recommended, rec=rec, kind=kind, nullable=nullable, group=group,
                item_choices=item_choices, also=also, hi_text=hi_text, empty=empty, empty_means=empty_means)
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DatasetConfig:
    path: str = opt("", "Training data: a .jsonl/.json/.csv/.tsv/.parquet file, a directory of them, or a hub dataset id.")
    format: str = opt("auto", "How examples are laid out; auto detects it from the fields.",
                      choices=("auto", "alpaca", "chat", "completion", "text"))
    validation_split: float = opt(0.05, "Fraction of examples held out to measure eval loss.",
                                  lo=0.0, hi=1.0, hi_open=True, recommended="0.05-0.1", rec=(0.01, 0.2))
    validation_path: str | None = opt(None, "A separate validation file; overrides validation_split.",
                                      nullable=True, empty_means="none: validation_split holds out")
    train_on: str = opt("completions", "completions: learn only the responses (prompt masked); all: every token.",
                        choices=("completions", "all"))
    max_examples: int | None = opt(None, "Use only the first N examples (quick trials).", lo=1, hi=10**12,
                                   nullable=True, empty_means="all examples")
    # Not a field (no annotation, not in the file): for messages, the config file each of this section's paths was
    # read from, by the path as read (load_config looked for a relative one beside that file first). A path changed
    # since (the wizard's field) or a config built in memory has none: it is read from the current folder only.
    read_from = cast("Mapping[str, str]", MappingProxyType({}))


@dataclass
class LoraConfig:
    r: int = opt(16, "LoRA rank: capacity of the adapter.", lo=1, hi=1024, recommended="8-64, 16 typical", rec=(4, 64),
                 group="LoRA")
    # Judged against r (engine.lora_scale): its hint's "x r" words and the cross-check's numbers are that rule's.
    alpha: float = opt(32, f"LoRA scaling numerator (scale = alpha / r); usually {ALPHA_RECOMMENDED_TEXT}.", lo=0.0,
                       lo_open=True, hi_text=ALPHA_MAX_TEXT, recommended=ALPHA_RECOMMENDED_TEXT, kind=(int, float),
                       group="LoRA")
    dropout: float = opt(0.05, "Dropout on the adapter input; regularises small datasets.", lo=0.0, hi=1.0,
                         hi_open=True, recommended="0-0.1", rec=(0.0, 0.1), group="LoRA")
    target_modules: Any = opt("all-linear", "Which linear layers get adapters: all-linear or a list of names.",
                              kind=(str, list), group="LoRA")


@dataclass
class TrainingConfig:
    max_seq_length: int = opt(512, "Longest example in tokens; longer ones are cut.", lo=8, hi=1_048_576,
                              recommended="keeps 95% of examples whole", group="Batch and steps")
    micro_batch_size: int = opt(4, "Examples per forward pass per GPU (per_device_train_batch_size).", lo=1,
                                hi=4096, group="Batch and steps")
    gradient_accumulation_steps: int = opt(4, "Micro-batches summed before each optimizer step.", lo=1,
                                           hi=65536, group="Batch and steps")
    num_epochs: float = opt(3, "Passes over the training data.", lo=0.0, lo_open=True, hi=1000,
                            recommended="1-3 for 500-5000 examples", rec=(1, 3), kind=(int, float), group="Batch and steps")
    max_steps: int = opt(-1, "Stop after this many optimizer steps; -1 or empty derives it from num_epochs.", lo=1,
                         hi=MAX_STEPS, also=(-1,), empty=-1, empty_means="from num_epochs", group="Batch and steps")
    # Judged by engine.learning_rate (graded, and per model): no `rec` here, so advice() asks that rule.
    learning_rate: float = opt(LORA_TYPICAL, "Peak learning rate of the adapter.", lo=0.0, lo_open=True, hi=1.0,
                               recommended=RECOMMENDED_TEXT, kind=(int, float), group="Learning rate and schedule")
    lr_scheduler: str = opt("cosine", "How the learning rate decays after warmup.",
                            choices=("cosine", "linear", "constant", "constant_with_warmup"),
                            group="Learning rate and schedule")
    warmup_ratio: float = opt(0.03, "Fraction of steps spent ramping the learning rate up from 0.", lo=0.0,
                              hi=1.0, hi_open=True, recommended="0.03", rec=(0.01, 0.1),
                              group="Learning rate and schedule")
    optimizer: str = opt("paged_adamw_32bit", "Optimizer; 8-bit saves memory. A GPU trains the default as torch's "
                         "fused AdamW (the same AdamW, faster), lean as paged_adamw_8bit.",
                         choices=("paged_adamw_32bit", "paged_adamw_8bit", "adamw_torch", "adamw_8bit"),
                         group="Learning rate and schedule")
    weight_decay: float = opt(0.001, "L2 pull of the adapter weights towards 0.", lo=0.0, hi=1.0,
                              recommended="0-0.01", rec=(0.0, 0.1), group="Learning rate and schedule")
    max_grad_norm: float = opt(0.3, "Gradients are clipped to this norm; guards against spikes.", lo=0.0,
                               lo_open=True, recommended="0.3-1.0", rec=(0.1, 1.0), kind=(int, float),
                               group="Learning rate and schedule")
    gradient_checkpointing: bool = opt(True, "Recompute activations in backward: much less memory, ~30 % slower.",
                                       group="Memory savers")
    precision: str = opt("auto", "Compute dtype: auto picks bf16 on Ampere+, fp16 on T4/V100, fp32 on CPU.",
                         choices=("auto", "bf16", "fp16", "fp32"), group="Memory savers")
    memory: str = opt("auto", "fast: the quickest path; lean: the least memory (activations offloaded to host "
                      "memory, 8-bit optimizer states); auto: fast where the estimate says it fits the GPU.",
                      choices=("auto", "fast", "lean"), group="Memory savers")
    compile: str | bool = opt("auto", "Compile each decoder layer with torch.compile (GPU with Triton): ~1.15x faster "
                              "steps after ~70 s of compiling; auto: on for runs of 1,000 steps or more on one "
                              "GPU, fast memory.", choices=("auto", True, False), kind=(str, bool))
    packing: bool = opt(True, "Pack whole examples into micro-batches up to a token budget (no padding waste).",
                        group="Memory savers")
    num_gpus: int | None = opt(None, "GPUs to train on; empty means all visible; 1 disables data parallelism.",
                               lo=1, hi=1024, nullable=True, empty_means="all visible", group="Batch and steps")
    parallelism: str = opt("auto", "Several GPUs: ddp puts the whole 4-bit model on each GPU; fsdp shards it across "
                           "them (models too big for one GPU); auto: fsdp only where the estimate says one GPU is "
                           "not enough.", choices=("auto", "ddp", "fsdp"), group="Batch and steps")
    logging_steps: int = opt(10, "Log loss, learning rate and grad norm every N steps.", lo=1, hi=MAX_STEPS,
                             group="Logging, eval and saving")
    eval_steps: int = opt(50, "Measure eval loss every N steps; several times per epoch.", lo=1, hi=MAX_STEPS,
                          group="Logging, eval and saving")
    save_steps: int = opt(100, "Save a checkpoint every N steps.", lo=1, hi=MAX_STEPS,
                          group="Logging, eval and saving")
    save_total_limit: int = opt(3, "Keep at most this many checkpoints.", lo=1, hi=10_000,
                                group="Logging, eval and saving")
    seed: int = opt(42, "Random seed for data order and adapter initialisation.", lo=0, hi=MAX_SEED,
                    group="Logging, eval and saving")
    report_to: list = opt([], "Extra loggers, e.g. [tensorboard] (used when installed).", kind=list,
                          item_choices=REPORT_TO, empty=[], empty_means="none", group="Logging, eval and saving")
    stop_on: list = opt(["nan_loss"], "Finding codes that checkpoint and stop the run.", kind=list,
                        group="Logging, eval and saving")
    sample_prompts: list = opt([], "Prompts generated at each evaluation; empty uses 3 held-out prompts.",
                               kind=list, empty=[], empty_means="3 held-out prompts", group="Logging, eval and saving")
    sample_max_new_tokens: int = opt(128, "Tokens generated per sample prompt; 0 turns samples off.", lo=0, hi=65_536,
                                     group="Logging, eval and saving")


@dataclass
class Config:
    model: str = opt("", "Base model: a hub id (meta-llama/Llama-2-7b-hf) or a local directory.")
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    quantization: str = opt("nf4", "nf4: QLoRA 4-bit with double quant; int8; none: plain LoRA in 16-bit.",
                            choices=("nf4", "int8", "none"))
    trust_remote_code: bool = opt(False, "Run the model repository's own Python code (only if you trust it).")
    run_name: str | None = opt(None, "Name of the run directory; default: config name + time.", nullable=True,
                               empty_means="config name + time")
    runs_dir: str = opt("runs", "Where run directories are created.")
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step on one GPU (times the GPU count when data-parallel)."""
        return self.training.micro_batch_size * self.training.gradient_accumulation_steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"dataset": DatasetConfig, "lora": LoraConfig, "training": TrainingConfig}


@dataclass(frozen=True)
class FieldSpec:
    path: str            # dotted, e.g. "training.learning_rate"
    name: str
    default: Any
    type: Any
    help: str
    lo: float | None
    hi: float | None
    lo_open: bool
    hi_open: bool
    choices: tuple | None
    recommended: str | None
    rec: tuple[float, float] | None
    kind: Any
    nullable: bool
    group: str
    item_choices: tuple | None = None
    also: tuple = ()
    hi_text: str | None = None
    empty: Any = NOT_SET
    empty_means: str = ""

    def range_text(self, *, whole: bool = False) -> str:
        """What is allowed: "[1, 1024]", "(0, 1]", ">= 1"; `whole` keeps an upper bound of no practical limit."""
        if self.choices:
            return "one of " + ", ".join(_yaml_word(c) for c in self.choices)
        upper: float | str | None = self.hi if whole or self.hi is None or self.hi < NO_PRACTICAL_LIMIT else None
        upper = self.hi_text if upper is None and self.hi_text else upper
        if self.lo is None and upper is None:
            return ""
        if self.also:
            return " or ".join([*(_fmt(v) for v in self.also), self._span(upper)])
        return self._span(upper)

    def _span(self, upper: float | str | None) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        lo = "-inf" if self.lo is None else _fmt(self.lo)
        if upper is None:
            return f"> {lo}" if self.lo_open else f">= {lo}"
        return f"{left}{lo}, {upper if isinstance(upper, str) else _fmt(upper)}{right}"

    def usual_text(self) -> str:
        """The recommended values as advice words them after "the usual": "range 8 to 64 (16 is typical)" for the
        hint's "8-64, 16 typical", "range 1 to 3 for 500 to 5000 examples", "0.03"."""
        text = self.recommended or (f"{self.rec[0]:g}-{self.rec[1]:g}" if self.rec else "")
        m = re.fullmatch(r"(\d[\d.]*)-(\d[\d.]*)(?:, (\S+) typical)?( for .*)?", text)
        if not m:
            return text
        lo, hi, typical, scope = m.groups()
        phrase = f"range {lo} to {hi}" + re.sub(r"(\d)-(\d)", r"\1 to \2", scope or "")
        return phrase + (f" ({typical} is typical)" if typical else "")

    def what_to_type(self) -> str:
        """What an empty field needs: "an integer in [1, 1024], e.g. 16" (the default as the example)."""
        if self.choices:
            return self.range_text()
        kind = self.kind or self.type
        want = _type_name((int, float) if kind is float else kind) if kind is not object else "a value"
        allowed = self.range_text()
        if allowed:
            want += f" {allowed}" if allowed[0] in "<>" or self.also else f" in {allowed}"
        example = self.default
        if isinstance(example, (int, float)) and not isinstance(example, bool):
            want += f", e.g. {_fmt(example)}"
        elif isinstance(example, str) and example:
            want += f", e.g. {example}"
        elif isinstance(example, list) and example:
            want += f", e.g. {yaml_text(example)}"
        return want


def _yaml_word(choice: Any) -> str:
    """A choice as the config file spells it: true and false, not Python's True and False."""
    return ("true" if choice else "false") if isinstance(choice, bool) else str(choice)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _base_type(annotation: str) -> Any:
    a = annotation.replace(" | None", "")
    return {"str": str, "int": int, "float": float, "bool": bool, "list": list, "Any": object}.get(a, object)


def _collect_fields() -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}

    def walk(cls, prefix: str):
        for f in dataclasses.fields(cls):
            path = f"{prefix}{f.name}"
            if f.name in SECTIONS and not prefix:
                walk(SECTIONS[f.name], path + ".")
                continue
            m = f.metadata
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out[path] = FieldSpec(path=path, name=f.name, default=default, type=_base_type(str(f.type)),
                                  help=m.get("help", ""), lo=m.get("lo"), hi=m.get("hi"),
                                  lo_open=m.get("lo_open", False), hi_open=m.get("hi_open", False),
                                  choices=m.get("choices"), recommended=m.get("recommended"), rec=m.get("rec"),
                                  kind=m.get("kind"), nullable=m.get("nullable", False), group=m.get("group", ""),
                                  item_choices=m.get("item_choices"), also=m.get("also", ()),
                                  hi_text=m.get("hi_text"), empty=m.get("empty", NOT_SET),
                                  empty_means=m.get("empty_means", ""))
    walk(Config, "")
    return out


FIELDS: dict[str, FieldSpec] = _collect_fields()


def _type_name(t: Any) -> str:
    if t == (int, float):
        return "a number"
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "text", bool: "true or false", list: "a list"}.get(t, str(t))


def value_problem(spec: FieldSpec, value: Any) -> str | None:
    """What the validator says of one field's value on its own, or None where it accepts it."""
    return _check_value(spec, value)[1]


def _check_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """Returns (coerced value, problem or None); messages show the value as the user wrote it."""
    typed = value
    if value is None and spec.empty is not NOT_SET:
        return copy.deepcopy(spec.empty), None
    if value is None:
        if spec.nullable:
            return None, None
        return value, f"{spec.path}: must be set; type {spec.what_to_type()}"
    expected = spec.kind or spec.type
    if expected is float:
        expected = (int, float)
    if expected is object:
        expected = None
    # One entry where a list goes (`report_to: tensorboard`, a prompt typed alone): a list of that one entry.
    if expected is list and isinstance(value, str) and value.strip():
        value = [value]
    # YAML reads 2e-4 (without a dot) as a string: accept numeric strings for numbers.
    if isinstance(value, str) and expected in ((int, float), int) and spec.type is not str:
        try:
            value = float(value) if expected == (int, float) else int(value)
        except ValueError:
            pass
    if expected is not None:
        allowed = expected if isinstance(expected, tuple) else (expected,)
        # bool is an int in Python; a YAML `true` is never a valid number, nor 1 a valid bool.
        ok = any(isinstance(value, t) and isinstance(value, bool) == (t is bool) for t in allowed)
        if not ok:
            want = spec.range_text() if spec.choices else _type_name(expected)  # auto, true or false: the choices
            return value, f"{spec.path}: expected {want}, got {yaml_text(value)}{_number_hint(value, expected)}"
    if spec.type is float and isinstance(value, int):
        value = float(value)
    if spec.choices and value not in spec.choices:
        hint = difflib.get_close_matches(str(value)[:80], [_yaml_word(c) for c in spec.choices], n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        return value, f"{spec.path}: {yaml_text(value)} is not allowed; {spec.range_text()}{more}"
    if spec.item_choices and isinstance(value, list):
        for item in value:
            if not isinstance(item, str) or item not in spec.item_choices:
                hint = difflib.get_close_matches(str(item)[:80], spec.item_choices, n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else ""
                return value, (f"{spec.path}: {yaml_text(item)} is not allowed; each entry is one of "
                               f"{', '.join(spec.item_choices)}{more}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return value, f"{spec.path}: {quote(typed)} is not a finite number"
        bad = False
        if value in spec.also:
            return value, None
        if spec.lo is not None and (value < spec.lo or (spec.lo_open and value == spec.lo)):
            bad = True
        if spec.hi is not None and (value > spec.hi or (spec.hi_open and value == spec.hi)):
            bad = True
        if bad:  # the no-practical-limit bound only where the value is past it
            above = spec.hi is not None and value > spec.hi
            return value, f"{spec.path}: {quote(typed)} is out of range; allowed {spec.range_text(whole=above)}"
    return value, None


def _number_hint(value: Any, expected: Any) -> str:
    """What to write instead, for a number written as people write it where the config wants digits: "; as a
    fraction: 0.05" for 5%, "; without separators: 1000" for 1,000, "; with a decimal point: 0.0002" for 0,0002,
    "; the number in full: 2000 (or 2048)" for 2k, "; just the number: 512" for 512 tokens, "; an integer: 1000"
    for 1e3. Empty where none of these fits."""
    if expected not in ((int, float), int) or not isinstance(value, str):
        return ""
    text = value.strip()
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)\s*%", text)
    if m and expected == (int, float):
        return f"; as a fraction: {float(m[1]) / 100:g}"
    if re.fullmatch(r"[1-9]\d{0,2}(?:([,\s'])\d{3})(?:\1\d{3})*", text):
        return f"; without separators: {re.sub(r'[^0-9]', '', text)}"
    m = re.fullmatch(r"(\d+),(\d+)", text)
    if m and expected == (int, float):
        return f"; with a decimal point: {m[1]}.{m[2]}"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmM])", text)
    if m:
        n, big = float(m[1]), m[2] in "mM"
        return f"; the number in full: {n * 1000 ** (1 + big):g} (or {n * 1024 ** (1 + big):g})"
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s+[A-Za-z][A-Za-z ]*", text)
    if m:
        return f"; just the number: {m[1]}"
    try:
        number = float(text)
    except ValueError:
        return ""
    return f"; an integer: {int(number)}" if expected is int and number.is_integer() and abs(number) < 1e18 else ""


def _unknown(path: str, key: str, known: list[str]) -> str:
    """An unknown key, with the key it most likely is: one of this section's, or the same key in its own section
    (`learning_rate` at the top level is training.learning_rate; `r` under training is lora.r)."""
    path, key = _key_text(path), _key_text(key)
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    section = path.rpartition(".")[0]
    elsewhere = [p for p in FIELDS if p.rpartition(".")[0] != section and p.rpartition(".")[2] == key]
    if elsewhere and not (hint and hint[0] == key):
        where = elsewhere[0].rpartition(".")[0]
        return (f"{path}: unknown key here; did you mean {elsewhere[0]!r}? (it goes "
                + (f"under {where}:)" if where else "at the top level)"))
    more = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(sorted(known))}"
    return f"{path}: unknown key{more}"


# Bytes a run name may take: a folder name holds 255, and the next free name adds "-2", "-3", ...
MAX_RUN_NAME_BYTES = 200


def run_name_problem(name: str) -> str | None:
    """run_name names one directory inside the runs root: no path, no way out of it. The problem, or None."""
    # A backslash is a plain character here (POSIX): a run made with --run-dir 'a\\b' is named so, and resumes.
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        return f"run_name: {quote(name)} is not a plain directory name; a name without '/', such as my-run"
    # A newline or an escape sequence in a folder name breaks or drives every line that prints its path.
    if any(unicodedata.category(c) == "Cc" for c in name):
        return (f"run_name: {quote(name)} holds a control character (a newline, tab or escape); a name of letters, "
                "digits, spaces and punctuation, such as my-run")
    if len(name.encode("utf-8")) > MAX_RUN_NAME_BYTES:
        return (f"run_name: {len(name.encode('utf-8'))} bytes is too long for a folder name (at most "
                f"{MAX_RUN_NAME_BYTES}); a shorter name, such as my-run")
    return None


def _key_word(key: Any) -> str:
    """A key as the file spells it: `~: 2` is the key null (not Python's None), `true: 1` true."""
    return key if isinstance(key, str) else yaml_text(key)


def _key_text(key: str) -> str:
    """A key as messages show it: a pasted paragraph as a key is cut to a line."""
    return key if len(key) <= 80 else key[:77] + "..."


def config_from_dict(raw: Any, *, source: str = "config") -> Config:
    """Validates a raw mapping (as read from YAML) into a Config; all problems at once."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {type_word(raw)}")
    problems: list[str] = []
    cfg = Config()
    top_known = [f.name for f in dataclasses.fields(Config)]
    for key, value in raw.items():
        if key not in top_known:
            problems.append(_unknown(_key_word(key), _key_word(key), top_known))
            continue
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.append(f"{key}: expected a mapping of keys (e.g. {key}: {{...}}), got {yaml_text(value)}")
                continue
            section = getattr(cfg, key)
            known = [f.name for f in dataclasses.fields(SECTIONS[key])]
            for sub, subval in value.items():
                path = f"{key}.{_key_word(sub)}"
                if sub not in known:
                    problems.append(_unknown(path, _key_word(sub), known))
                    continue
                coerced, problem = _check_value(FIELDS[path], subval)
                if problem:
                    problems.append(problem)
                else:
                    setattr(section, sub, coerced)
        else:
            coerced, problem = _check_value(FIELDS[key], value)
            if problem:
                problems.append(problem)
            else:
                setattr(cfg, key, coerced)
    # A key whose value was refused above is not also "not set" (it kept its empty default): one problem per key.
    reported = {p.split(":", 1)[0] for p in problems}
    problems += [p for p in _cross_checks(cfg, raw) if p.split(":", 1)[0] not in reported]
    if not reported & {"lora.r", "lora.alpha"}:  # a refused r kept its default: alpha is not judged against that
        problems += filter(None, [alpha_problem(cfg.lora.alpha, cfg.lora.r)])
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the config",
                          problems=problems)
    return cfg


# Why lorapilot never shards int8 weights (config validation for parallelism fsdp, engine.plan for auto): bitsandbytes'
# int8 layers read their int8 codes and row scales from attributes of the weight object itself, which FSDP2 replaces
# with a sharded tensor of its own (accelerate's FSDP2 preparation has a path for 4-bit weights only, and
# engine.model stores only nf4's in a shardable dtype): a run would fail at its first forward or keep every weight
# whole on each GPU while the estimate counted them split.
INT8_UNSHARDABLE = "bitsandbytes keeps their scales on the weight object that FSDP replaces with its shards"

# The output head and the token embeddings, by the names Llama-style models (and a few others) give them: lorapilot
# adapts the decoder's linear layers only. Liger's fused loss reads the head's weight directly (engine.train.speed), so
# an adapter there would train nothing, silently; vLLM serves no adapter on either (engine.export.vllm).
NOT_ADAPTED = {"lm_head": "the output head", "embed_out": "the output head", "embed_tokens": "the token embeddings",
               "wte": "the token embeddings", "word_embeddings": "the token embeddings"}


def not_adapted_problem(names: list[str]) -> str | None:
    """lora.target_modules naming the output head or the embeddings: the one rule (config validation, and the
    trainer's check of the loaded model's layers); None where every name may be a decoder linear layer."""
    named = [n for n in names if isinstance(n, str) and n in NOT_ADAPTED]
    if not named:
        return None
    what = " and ".join(dict.fromkeys(NOT_ADAPTED[n] for n in named))
    return (f"lora.target_modules: {', '.join(quote(n) for n in named)} ({what}) cannot be adapted: lorapilot "
            "puts LoRA adapters on the decoder's linear layers only (the fused loss reads the head's weight directly, "
            "and vLLM serves no adapter on the head or the embeddings); remove "
            f"{'it' if len(named) == 1 else 'them'} (all-linear adapts every decoder linear layer)")


def _cross_checks(cfg: Config, raw: dict) -> list[str]:
    out = []
    if not cfg.model:
        out.append("model: must be set to a hub id or a local directory")
    if not cfg.dataset.path:
        out.append("dataset.path: must be set to a data file, a directory or a hub dataset id")
    tm = cfg.lora.target_modules
    if (isinstance(tm, list) and (not tm or not all(isinstance(x, str) and x for x in tm))) or tm == "":
        out.append("lora.target_modules: expected all-linear or a non-empty list of module names")
    elif isinstance(tm, str) and tm != "all-linear" and difflib.get_close_matches(tm.lower(), ["all-linear"],
                                                                                  cutoff=0.8):
        out.append(f"lora.target_modules: {quote(tm)} is no module name; did you mean 'all-linear'?")
    elif isinstance(tm, str) and len(tm.replace(",", " ").split()) > 1:
        # `q_proj, v_proj` is one name to YAML (and to peft, which finds no such module once the trainer runs)
        names = ", ".join(tm.replace(",", " ").split())
        out.append(f"lora.target_modules: {quote(tm)} is one name; for several, write a list: [{names}]")
    elif isinstance(tm, str) and tm != "all-linear":
        cfg.lora.target_modules = [tm]
    if isinstance(cfg.lora.target_modules, list) and not_adapted_problem(cfg.lora.target_modules):
        out.append(not_adapted_problem(cfg.lora.target_modules) or "")
    if cfg.run_name is not None and run_name_problem(cfg.run_name):
        out.append(run_name_problem(cfg.run_name) or "")
    for key in ("report_to", "stop_on", "sample_prompts"):
        v = getattr(cfg.training, key)
        if not all(isinstance(x, str) for x in v):
            out.append(f"training.{key}: expected a list of text entries, got {yaml_text(v)}")
    if "none" in cfg.training.report_to and len(set(cfg.training.report_to)) > 1:
        out.append("training.report_to: none turns every logger off; write [none] alone, or the loggers without it")
    from engine.diagnose.codes import STOPPABLE  # small module, no heavy imports
    for code in cfg.training.stop_on:
        if isinstance(code, str) and code not in STOPPABLE:
            out.append(f"training.stop_on: unknown finding code {quote(code)}; one of {', '.join(STOPPABLE)}")
    if cfg.training.precision == "fp16" and cfg.quantization == "none":
        pass  # allowed; mixed precision with fp32 master adapter weights
    return out + _no_ops(cfg)


def _no_ops(cfg: Config) -> list[str]:
    """Settings that another setting makes do nothing, each a problem of its own key: the trainer would accept them
    and run as if they were not there."""
    t, out = cfg.training, []
    if t.memory == "lean" and not t.gradient_checkpointing:
        # TRL's offload would move every saved tensor instead, a path neither measured nor estimated
        out.append("training.memory: lean offloads the checkpointed layer inputs to host memory; with "
                   "training.gradient_checkpointing false there are none, and every layer's activations stay on the "
                   "GPU; set gradient_checkpointing true (lean's least memory), or memory fast")
    if t.parallelism == "fsdp" and cfg.quantization == "int8":
        out.append(f"training.parallelism: fsdp cannot shard quantization: int8 weights ({INT8_UNSHARDABLE}); set "
                   "quantization nf4 (its 4-bit weights are sharded) or none, or parallelism ddp")
    if t.parallelism == "fsdp" and t.num_gpus == 1:
        out.append("training.parallelism: fsdp shards the model across GPUs, and training.num_gpus 1 trains on one: "
                   "nothing to shard; set num_gpus empty (every visible GPU) or 2 or more, or parallelism auto")
    if t.parallelism == "fsdp":
        # rank 0 cannot generate alone from a sharded model: the plan's one rule, known here before any plan
        from engine.plan import sample_prompts_problem, samples_for

        if problem := sample_prompts_problem(cfg, samples_for(cfg, "fsdp")[0]):
            out.append(problem)
    if cfg.dataset.validation_split == 0 and not cfg.dataset.validation_path:
        # Evaluations need a validation set: without one the trainer never evaluates, so neither samples nor the
        # overfitting check (it reads the eval loss) ever come.
        none = ("dataset.validation_split 0 holds out no examples to evaluate on; set dataset.validation_split "
                "(e.g. 0.05) or dataset.validation_path")
        if t.sample_prompts and t.sample_max_new_tokens > 0:
            out.append(f"training.sample_prompts: samples are generated at each evaluation, and {none}, or leave "
                       "sample_prompts empty")
        if "overfitting" in t.stop_on:
            out.append(f"training.stop_on: overfitting is found from the eval loss, and {none}, or take overfitting "
                       "out of stop_on")
    return out


@dataclass(frozen=True)
class Advice:
    """What a field's row says about a valid value: `level` is the finding severity it is shown with (info,
    warning), or ok for a value that is fine but worth a word (the demo's own learning rate)."""
    text: str
    level: str = "warning"


def advice(cfg: Config) -> dict[str, Advice]:
    """Valid values outside the seeds' recommended ranges, by dotted path: warnings, not errors.

    The learning rate's is engine.learning_rate's verdict, the one the checklist and the estimate show."""
    from engine.learning_rate import lr_verdict

    out = {}
    for path, spec in FIELDS.items():
        if not spec.rec:
            continue
        head, _, tail = path.partition(".")
        value = getattr(getattr(cfg, head), tail) if tail else getattr(cfg, head)
        lo, hi = spec.rec
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not lo <= value <= hi:
            out[path] = Advice(f"{value:g} is {'above' if value > hi else 'below'} the usual {spec.usual_text()}")
    lr = lr_verdict(cfg.training.learning_rate, cfg.model)
    if lr.worth_saying:
        out["training.learning_rate"] = Advice(lr.message, lr.level)
    alpha = alpha_advice(cfg.lora.alpha, cfg.lora.r)
    if alpha:
        out["lora.alpha"] = Advice(alpha)
    return out


def load_config(path: str | Path) -> Config:
    """Reads and validates a YAML config file; errors name the file."""
    from engine.config_file import read_yaml_config

    p = Path(path)
    raw = read_yaml_config(p)
    cfg = config_from_dict(raw, source=str(p))
    _resolve_relative_paths(cfg, p.parent)
    cfg.dataset.read_from = {path: str(p) for path in (cfg.dataset.path, cfg.dataset.validation_path) if path}
    return cfg


def _resolve_relative_paths(cfg: Config, base: Path) -> None:
    """Relative local paths in a config file are relative to the file (so presets work from anywhere)."""
    def fix(value: str) -> str:
        if not value or Path(value).is_absolute():
            return value
        cand = (base / value)
        return str(cand.resolve()) if cand.exists() else value
    cfg.model = fix(cfg.model)
    cfg.dataset.path = fix(cfg.dataset.path)
    if cfg.dataset.validation_path is not None:
        cfg.dataset.validation_path = fix(cfg.dataset.validation_path)


def as_written(spec: FieldSpec, value: Any) -> Any:
    """A value as a user writes it in the file: a whole number in a float field as an int (`alpha: 32`,
    `num_epochs: 3`, not the 32.0 the loader keeps); it reads back to the same value."""
    if spec.type is float and isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


def dump_config(cfg: Config) -> str:
    import yaml

    from engine.config_paths import get_path, put_path

    raw = cfg.to_dict()
    for path, spec in FIELDS.items():
        put_path(raw, path, as_written(spec, get_path(raw, path)))
    return yaml.safe_dump(raw, sort_keys=False, default_flow_style=False)


# The config's fields that name local files or folders (a hub id is left alone: nothing of that name is here).
PATH_FIELDS = ("model", "dataset.path", "dataset.validation_path")


def paths_from(cfg: Config, folder: Path) -> Config:
    """`cfg` with its relative local paths as a config file in `folder` must say them.

    A Config in memory holds paths relative to the working folder (the wizard's, as typed); load_config reads a
    file's relative paths against the file's folder first, and the trainer against its own. A data path typed as
    data/train.jsonl and saved into configs/run.yaml read back as configs/data/train.jsonl where that exists
    (another file, silently), and as nothing from another folder (`train --resume` of a run elsewhere). Such a
    path is written absolute, unless the file is written in the working folder itself."""
    if folder.resolve() == Path.cwd().resolve():
        return cfg
    return absolute_paths(cfg)


def absolute_paths(cfg: Config) -> Config:
    """`cfg` with its relative local paths (PATH_FIELDS naming something here) absolute: what they name from this
    working folder, read the same from any other (a sweep's record, which its resume reads elsewhere)."""
    out = copy.deepcopy(cfg)
    for key in PATH_FIELDS:
        head, _, tail = key.partition(".")
        owner = getattr(out, head) if tail else out
        value = getattr(owner, tail or head)
        if value and not value.startswith("~") and not Path(value).is_absolute() and Path(value).exists():
            setattr(owner, tail or head, str(Path(value).resolve()))
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    """Writes the whole config; its relative local paths as they must read from the file's folder (paths_from)."""
    Path(path).write_text(dump_config(paths_from(cfg, Path(path).parent)), encoding="utf-8")


def check_override(path: str, value: Any, *, flag: str) -> Any:
    """A command-line override (train --max-steps) checked as the same key in the config file is; coerced."""
    coerced, problem = _check_value(FIELDS[path], value)
    if problem:
        raise ConfigError(f"{flag} {quote(value)}: {problem}")
    return coerced
