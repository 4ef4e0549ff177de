"""The model card (README.md) of every export, in place of peft's empty template.

What a reader needs to trust and use the model: the base, the data (path, rows, format, template, system
prompt), the settings that matter, how far it trained and how the curves ended, the hardware and the time, and
how to load or serve it. Written from RunFacts only (the run directory), so it never claims what the run did not
record: unknown values say so.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import shell_word
from engine.export.facts import RunFacts


def _num(x, fmt: str = ".4f") -> str:
    return "not recorded" if x is None else format(x, fmt)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s"


def _looks_like_hub_id(model: str) -> bool:
    return model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists()


def _method(cfg) -> str:
    quant = {"nf4": "QLoRA (base in 4-bit NF4, double quantisation)", "int8": "LoRA on an 8-bit base",
             "none": "LoRA on a 16-bit base"}.get(cfg.quantization, cfg.quantization)
    targets = cfg.lora.target_modules if isinstance(cfg.lora.target_modules, str) else \
        ", ".join(cfg.lora.target_modules)
    return f"{quant}; r {cfg.lora.r}, alpha {cfg.lora.alpha:g}, dropout {cfg.lora.dropout:g}, targets {targets}"


def _optimizer(facts: RunFacts) -> str:
    """The optimizer that ran; the config's name beside it where the trainer ran another."""
    asked = facts.cfg.training.optimizer
    ran = facts.optimizer
    return asked if ran is None or ran == asked else f"{ran} (config.yaml asks {asked}; train.log says why)"


def _steps(facts: RunFacts) -> str:
    if facts.step is None and facts.max_steps is None:
        return "unknown (no status.json, checkpoint or train record says)"
    return f"{'unknown' if facts.step is None else facts.step} of " \
           f"{'unknown' if facts.max_steps is None else facts.max_steps}"


def training_table(facts: RunFacts) -> list[tuple[str, str]]:
    cfg, data, t = facts.cfg, facts.data, facts.cfg.training
    rows = "unknown" if data.rows is None else f"{data.rows:,}"
    best = (f"; lowest {facts.best_eval[1]:.4f} at step {facts.best_eval[0]}" if facts.best_eval else "")
    return [
        ("Base model", f"`{facts.base_model}`"),
        ("Dataset", f"`{data.path}`: {rows} rows, format {data.format}, prompt format: {data.template}"
                    + (f", validation split {cfg.dataset.validation_split:g}" if not cfg.dataset.validation_path
                       else f", validation from `{cfg.dataset.validation_path}`")),
        ("System prompt", repr(data.system_prompt) if data.system_prompt else "none shared by every row"),
        ("Trained tokens", "the answers only (prompts masked)" if cfg.dataset.train_on == "completions"
         else "every token"),
        ("Method", _method(cfg)),
        ("Steps", _steps(facts)),
        ("Batch", f"{t.micro_batch_size} x {t.gradient_accumulation_steps} accumulation, "
                  f"sequences up to {t.max_seq_length} tokens"
                  + (", packed" if (t.packing if facts.packed is None else facts.packed) else "")),
        ("Learning rate", (f"{t.learning_rate:g}, {t.lr_scheduler}, warm-up {t.warmup_ratio:g} of the steps; "
                           f"optimizer {_optimizer(facts)}")),
        ("Final train loss", _num(facts.train_loss)),
        ("Final eval loss", _num(facts.eval_loss) + best),
        ("Learning curve", facts.verdict or "no verdict (fewer than two evaluations)"),
        ("Hardware", facts.hardware or "not recorded"),
        ("Training time", _duration(facts.seconds)),
    ]


def model_card(facts: RunFacts, *, serve_title: str, serve_text: str, library: str = "transformers") -> str:
    front = ["---", f"library_name: {library}"]
    if _looks_like_hub_id(facts.base_model):
        front.append(f"base_model: {facts.base_model}")
    front += ["tags:", "- lorapilot", "- lora"] + (["- qlora"] if facts.cfg.quantization == "nf4" else []) + ["---"]
    table = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in training_table(facts))
    notes = "".join(f"\n- {n}" for n in facts.data.notes)
    return "\n".join(front) + f"""

# {facts.name}

A LoRA fine-tune of `{facts.base_model}`, trained with lorapilot (run `{facts.run_dir.resolve()}`).

## Training

| | |
|---|---|
{table}
{notes}

## {serve_title}

{serve_text}

## Reproduce

`lorapilot train {shell_word(facts.run_dir.resolve() / 'config.yaml')}` (the run's full configuration).
"""


def write_card(facts: RunFacts, out: Path, *, serve_title: str, serve_text: str, library: str = "transformers") -> Path:
    """README.md in `out`: the model card, with how to load or serve this export under `serve_title`."""
    path = Path(out) / "README.md"
    path.write_text(model_card(facts, serve_title=serve_title, serve_text=serve_text, library=library),
                    encoding="utf-8")
    return path


def write_run_card(run_dir: Path) -> Path:
    """The card of a run's own adapter/ (in place of the one peft writes), written when the run finishes."""
    from engine.export.facts import run_facts

    facts = run_facts(run_dir)
    return write_card(facts, facts.adapter, serve_title="Load it", serve_text=adapter_usage(facts, facts.adapter),
                      library="peft")


_GENERATE = """messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
print(tok.decode(model.generate(**inputs, max_new_tokens=128)[0][inputs["input_ids"].shape[1]:],
                 skip_special_tokens=True))"""


def adapter_usage(facts: RunFacts, folder: Path) -> str:
    return f"""The LoRA adapter (PEFT format) with the tokenizer and chat template it trained with. With peft:

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{folder}")  # loads the base named in adapter_config.json
tok = AutoTokenizer.from_pretrained("{folder}")
{_GENERATE.format()}
```

The base it loads is `{facts.base_path}`; on another machine, edit `base_model_name_or_path` in adapter_config.json.
Other servers: `lorapilot export {shell_word(facts.run_dir)} --for ollama|vllm|llama.cpp`."""


def _saved_dtype(folder: Path) -> str:
    """The dtype the merged model was saved in (its config.json), in a reader's words."""
    from engine.json_file import read_table

    cfg = read_table(folder / "config.json") or {}
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "")
    return {"bfloat16": "16-bit, bf16", "float16": "16-bit, fp16", "float32": "32-bit, fp32"}.get(dtype, dtype or
                                                                                                  "its dtype not recorded")


def merged_usage(folder: Path, quantization: str, *, saved: Path | None = None) -> str:
    """How to load the merged model in `folder`; saved: where its files are now (an export being written), if
    elsewhere."""
    from engine.export.merge import merged_onto

    return f"""The adapter merged into {merged_onto(quantization)}; saved {_saved_dtype(saved or folder)}, a plain transformers
model:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{folder}")
tok = AutoTokenizer.from_pretrained("{folder}")
{_GENERATE.format()}
```"""
