"""`lorapilot export RUN --for vllm`: the adapter as vLLM loads it, checked, and the `vllm serve` line beside it.

vLLM serves the base and applies PEFT adapters per request (`--enable-lora`). What it refuses, from its source
(vllm/config/lora.py, vllm/lora/peft_helper.py, vllm/lora/lora_model.py, 2026):
- a rank above `--max-lora-rank`, whose allowed values are MAX_LORA_RANKS;
- `modules_to_save` (fully trained extra modules) and DoRA;
- adapter weights on modules the model does not expose for LoRA. lm_head and the embeddings are the ones a
  PEFT adapter may carry and vLLM will not serve (its extra-vocabulary LoRA support is being removed): they are
  named here as errors, before a user finds out at the first request.
What it does not refuse, and serves wrong: an adapter whose module names are not the served model's. vLLM serves the
checkpoint's whole model, and a run on a multimodal checkpoint trained its text decoder alone, named otherwise
(`model.layers.N` against `model.language_model.layers.N`): vLLM would apply none of it, without a word. The adapter is
renamed to the checkpoint's names here (engine.export.served_names).
The chat template and the end-of-turn tokens the run trained with travel with the adapter (`--chat-template`,
`--generation-config`), so vLLM renders and stops as training did.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapter_config import read_adapter_config
from engine.errors import UserError, shell_word
from engine.rundir import ADAPTER_FILES, safetensors_names

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
NOT_SERVED = ("lm_head", "embed_tokens", "wte", "word_embeddings", "embed_out")


@dataclass
class VllmCheck:
    rank: int
    max_lora_rank: int
    targets: list[str]
    problems: list[str] = field(default_factory=list)


def check_adapter(adapter: Path) -> VllmCheck:
    """Reads adapter_config.json and the weight names (the source of truth, as vLLM itself does)."""
    cfg = read_adapter_config(adapter) or {}   # whole and a table: run_facts checked (adapter_problem)
    rank = int(cfg.get("r") or 0)
    ranks = [r for r in [rank, *(cfg.get("rank_pattern") or {}).values()] if r]
    top = max(ranks) if ranks else 0
    allowed = next((m for m in MAX_LORA_RANKS if m >= top), None)
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else sorted(targets)
    check = VllmCheck(rank=top, max_lora_rank=allowed or 0, targets=targets)
    if allowed is None:
        check.problems.append(f"LoRA rank {top} is above vLLM's largest --max-lora-rank ({MAX_LORA_RANKS[-1]})")
    if cfg.get("modules_to_save"):
        check.problems.append(f"modules_to_save {cfg['modules_to_save']}: vLLM only serves adapters without it")
    if cfg.get("use_dora"):
        check.problems.append("DoRA adapters: vLLM does not serve them")
    if cfg.get("bias", "none") != "none":
        check.problems.append(f"bias {cfg['bias']!r}: vLLM serves adapters with bias 'none'")
    weights = adapter / ADAPTER_FILES[1]
    names = safetensors_names(weights) if weights.exists() else []   # whole: run_facts checked (adapter_problem)
    hit = sorted({part for n in names + targets for part in n.split(".") if part in NOT_SERVED})
    if hit:
        check.problems.append(f"the adapter adapts {', '.join(hit)} (output head / embeddings): vLLM refuses LoRA "
                              "weights there; serve the merged model instead (`lorapilot export --merged`)")
    return check


def serve_command(base: str, name: str, folder: Path, adapter: str, max_lora_rank: int) -> list[str]:
    """The `vllm serve` line, run in `folder`: the adapter by its path relative to it (the folder may be moved)."""
    cmd = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{name}={adapter}",
           "--max-lora-rank", str(max_lora_rank)]
    if (folder / adapter / "chat_template.jinja").exists():
        cmd += ["--chat-template", f"{adapter}/chat_template.jinja"]
    if (folder / adapter / "generation_config.json").exists():
        cmd += ["--generation-config", adapter]
    return cmd


def export_vllm(run_dir: str | Path, out: str | Path, *, log=print) -> Path:
    from engine.export.facts import run_facts
    from engine.export.merge import check_not_training, writing

    check_not_training(run_dir)
    facts = run_facts(run_dir)
    check = check_adapter(facts.adapter)
    if check.problems:
        raise UserError(f"{facts.adapter}: vLLM would refuse this adapter", problems=check.problems)
    with writing(out) as tmp:
        _, renamed = _write_vllm(facts, check, tmp)
    # Not the serve line itself: it names the adapter from the export's folder (it failed where the user was), and
    # wrapped for 80 columns it pasted as several commands. serve.sh runs it from anywhere; one word, kept whole.
    log(f"serve it: `{shell_word(Path(out) / 'serve.sh')}` (vllm serve, the adapter as model '{facts.name}'; the "
        "line it runs is in README.md)")
    if renamed:
        log(f"note: {renamed}")
    if facts.cfg.quantization != "none":
        log(f"note: {served_base_note(facts.cfg.quantization, facts.run_dir)}")
    return Path(out)


def _write_vllm(facts, check: VllmCheck, dst: Path) -> tuple[str, str | None]:
    """The adapter, serve.sh and the cards into `dst`; returns the serve line, and what renaming the adapter for a
    multimodal checkpoint did (engine.export.served_names), if it did."""
    from engine.export.card import write_card
    from engine.export.merge import write_adapter
    from engine.export.script import write_script
    from engine.export.served_names import rename_for_checkpoint

    adapter = dst / "adapter"
    write_adapter(facts.run_dir, adapter, card=False)   # inside the export's one staging folder
    renamed = rename_for_checkpoint(adapter, facts.base_path)   # vLLM serves the whole checkpoint, named as it is
    name = facts.name
    cmd = serve_command(facts.base_path, name, dst, adapter.name, check.max_lora_rank)
    line = shlex.join(cmd)
    write_script(dst / "serve.sh", f"serves {facts.base_model} with the run's adapter as model '{name}' "
                 "(OpenAI-compatible API on port 8000).", f'exec {line} "$@"')
    usage = f"""In this folder:

```sh
{line}
```

(`serve.sh` runs it from anywhere). Then ask for the model by its name:

```sh
curl http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "{name}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
```

- Checked against vLLM's LoRA support: rank {check.rank} (`--max-lora-rank {check.max_lora_rank}`, the smallest \
allowed value that holds it); adapted modules {', '.join(check.targets) or 'none'}; no lm_head or embedding \
weights, no modules_to_save, no DoRA.
- `--chat-template` is the template the run trained with and `--generation-config` carries its end-of-turn tokens,\
 so vLLM renders prompts and stops as training did.
- {served_base_note(facts.cfg.quantization, facts.run_dir)} The base path is `{facts.base_path}`; on another \
machine, name the base there.""" + (f"\n- {renamed[0].upper()}{renamed[1:]}." if renamed else "")
    write_card(facts, adapter, serve_title="Serve it with vLLM", serve_text=usage, library="peft")
    write_card(facts, dst, serve_title="Serve it with vLLM", serve_text=usage, library="peft")
    return line, renamed


def served_base_note(quantization: str, run_dir: Path) -> str:
    """What vLLM applies the adapter to, against what it trained with. vLLM loads the base unquantised: for a
    quantised run that is not the model trained, evaluated and chatted with, by the whole quantisation error (on the
    demo run, logits off by up to 1.05 where the adapter moves them by 5.0: engine.export.merge's measurement)."""
    if quantization == "none":
        return "vLLM loads the base unquantised, as the adapter trained against it."
    return (f"vLLM loads the base unquantised, and the adapter trained against its {quantization} weights: the "
            "served model differs from the one trained (and from the playground and `lorapilot chat`) by the "
            "quantisation error. For the model as trained, serve the merged export, which merges into the "
            f"dequantised weights: `lorapilot export {shell_word(run_dir)} --merged DIR`, then `vllm serve DIR`.")
