"""`lorapilot export`: the adapter as is, or merged into the base (16-bit on a GPU) for serving; each with a model
card.

Merged into which base: the one the adapter trained against. A QLoRA adapter learnt to correct the base as the
trainer computed with it, its NF4 weights dequantised, not the original 16-bit weights; merged into those, the
model differs from the one trained, evaluated, sampled and chatted with by the whole quantisation error (on the
demo run: logits off by up to 1.05, where the adapter itself moves them by 5.0; into the dequantised weights: 4e-6).
So a quantised run's base is loaded quantised exactly as the trainer loaded it, dequantised, then merged
(merge_base); the card says so (merged_onto)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError, shell_word
from engine.export.facts import finished_adapter, load_run_config

if TYPE_CHECKING:
    from engine.config import Config


def adapter_dir(run_dir: str | Path) -> Path:
    return finished_adapter(Path(run_dir))


def check_not_training(run_dir: str | Path) -> None:
    """Refuses (UserError) to export a run a trainer is training again (a finished run resumed to more steps): its
    adapter/ is the earlier finish's, the card would give the live run's step with it, and the trainer rewrites the
    adapter's files in place when it ends, under a copy being made of them."""
    from engine.rundir import lock_held, read_status, require_run_dir

    rd = require_run_dir(run_dir)   # a typo is named as one, not as a lock file that cannot be made
    if not lock_held(rd):
        return
    status = read_status(rd) or {}
    at = f" at step {status['step']} of {status.get('max_steps')}" if isinstance(status.get("step"), int) else ""
    raise UserError(f"{rd}: a trainer is training it{at}: its adapter/ is an earlier finish's, and is replaced "
                    "when this training ends",
                    fix=f"export once it is done (lorapilot runs shows it), or stop it first: lorapilot stop "
                        f"{shell_word(rd)}")


def check_empty_out(out: str | Path) -> Path:
    """Never writes over the user's files: the folder must be new or empty."""
    dst = Path(out)
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: exists and is a file, not a folder", fix="choose a new folder with --out")
    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst}: exists and is not empty", fix="choose a new folder with --out")
    return dst


PARTIAL = ".partial-"


@contextmanager
def writing(out: str | Path) -> Iterator[Path]:
    """The folder an export writes into, in place of `out` (new or empty): a hidden folder beside it, given out's
    name only once everything is written. An export that fails or is interrupted half-way leaves no folder that
    looks complete (a merged model without its tokenizer would load and answer wrongly): the hidden one is removed,
    and one a kill -9 leaves behind is named `.OUT.partial-...`. A folder or file that appeared at `out` meanwhile is
    never written over: the rename refuses."""
    dst = check_empty_out(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}{PARTIAL}{secrets.token_hex(4)}"
    tmp.mkdir()   # the user's umask, as OUT made directly would have
    try:
        yield tmp
        try:
            os.rename(tmp, dst)   # replaces an empty folder; refuses a file or a folder with something in it
        except OSError:
            raise UserError(f"{dst}: something was written there while exporting; the export was not written",
                            fix="choose a new folder with --out") from None
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        from engine.rundir import disk_full_path

        if not isinstance(e, UserError) and disk_full_path(e, dst) is not None:
            # shutil.copytree's error is a list of one '[Errno 28] ...' per file; safetensors' and torch's their own
            raise UserError(f"{dst}: no space left on device to write the export; nothing was written",
                            fix="free space on that disk and export again, or give another folder (--out, --merged) "
                                "on a disk with room") from None
        raise


def export_adapter(run_dir: str | Path, out: str | Path, *, card: bool = True) -> Path:
    check_not_training(run_dir)
    with writing(out) as tmp:
        write_adapter(run_dir, tmp, card=card, shown=Path(out))
    return Path(out)


def write_adapter(run_dir: str | Path, dst: Path, *, card: bool = True, shown: Path | None = None) -> None:
    """The adapter, its tokenizer and generation config (and card) into `dst`: a folder being written (writing's, or
    a part of another export's, which stages the whole once). shown: the path the card gives."""
    src = adapter_dir(run_dir)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    tokenizer = served_tokenizer(src)
    save_tokenizer(tokenizer, dst)
    save_served_generation_config(src, tokenizer, dst)
    if card:
        from engine.export.card import adapter_usage, write_card
        from engine.export.facts import run_facts

        facts = run_facts(run_dir)
        write_card(facts, dst, serve_title="Load it", serve_text=adapter_usage(facts, shown or dst), library="peft")


def merge_dtype():
    """(the dtype the base is loaded in for the merge, its words): bf16 on a GPU; fp32 on the CPU, where bf16
    matmuls are slow or missing (the files are then twice the size of a 16-bit model's)."""
    import torch

    return (torch.bfloat16, "16-bit (bf16)") if torch.cuda.is_available() else (torch.float32, "32-bit (fp32, no GPU)")


def merging_line(quantization: str) -> str:
    onto = "the base's weights" if quantization == "none" else "the base's quantised weights, dequantised"
    return f"merging the adapter into {onto} (what it trained against), in {merge_dtype()[1]} ..."


def merged_onto(quantization: str) -> str:
    """In words, the base weights export_merged merges the adapter into (merge_base's rule)."""
    if quantization == "none":
        return "the base's original weights (what it trained against)"
    kind = "NF4 (4-bit)" if quantization == "nf4" else "8-bit"
    return (f"the base's {kind} weights, dequantised: the weights it trained against (the original unquantised "
            "weights would give a model that differs from the trained one by the quantisation error)")


def trained_precision(run_dir: Path, cfg) -> str:
    """The compute dtype the trainer loaded (and so quantised) the base in: its plan's (status.json), else the
    config's rule on this machine."""
    from engine.model import compute_dtype_name, detect_hardware
    from engine.rundir import read_status

    plan = (read_status(run_dir) or {}).get("plan")
    recorded = plan.get("precision") if isinstance(plan, dict) else None
    if recorded in ("bf16", "fp16", "fp32"):
        return recorded
    return compute_dtype_name(cfg.training.precision, detect_hardware())


def merge_base(run_dir: Path, cfg, dtype, *, trust_remote_code: bool):
    """The base to merge into, unquantised, in `dtype`, in CPU memory: what the adapter trained against. A quantised
    run's base is loaded as the trainer loaded it (engine.model.load_base_model: same quantisation, same compute
    dtype), then dequantised (transformers' dequantize, which puts plain linear layers back)."""
    from engine.model import causal_lm, load_base_model, resolve_model_path

    if cfg.quantization == "none":
        return causal_lm(resolve_model_path(cfg.model), dtype=dtype, trust_remote_code=trust_remote_code)
    base, _ = load_base_model(cfg.model, cfg.quantization, trained_precision(run_dir, cfg),
                              trust_remote_code=trust_remote_code, device_map={"": "cpu"})
    return base.dequantize(dtype=dtype)


def served_tokenizer(adapter: Path):
    """The run's tokenizer as every export saves it: the chat template training used, as servers must render it
    (engine.data.template.served_template). An adapter saved by an older lorapilot gets it too: a base model's
    template without the BOS training fed, a Llama 3.2 clock not yet fixed (then the day the playground writes)."""
    from engine.data.prompt import load_style
    from engine.data.template import served_template, training_chat_template
    from engine.model import load_tokenizer

    tokenizer = load_tokenizer(str(adapter))
    style = load_style(adapter)
    tokenizer.chat_template = served_template(tokenizer, training_chat_template(tokenizer, style.format if style
                                                                               else "chat"))
    return tokenizer


def save_served_generation_config(adapter: Path, tokenizer, out: Path, model_config=None) -> None:
    """generation_config.json stopping where the playground, chat and samples stop (engine.data.stops, one rule):
    the adapter's (the base's sampling defaults and the stops its run saved; without one, the model's
    `model_config`) with every stop of the run's tokenizer added. Copied as it was, an adapter saved by an older
    lorapilot, whose stops were a list of known names, served without a trained end token the playground stops on
    (the merged model and vLLM's --generation-config ran on past the answer)."""
    from transformers import GenerationConfig

    from engine.data.stops import save_generation_config

    saved = adapter / "generation_config.json"
    base = GenerationConfig.from_pretrained(str(adapter)) if saved.is_file() else model_config
    save_generation_config(base, tokenizer, out)


def save_tokenizer(tokenizer, out: str | Path) -> None:
    """The tokenizer into a model folder, tokenizer_config.json saying whether it adds a BOS (add_bos_token).

    transformers 5 leaves that key out when the BOS comes from tokenizer.json's post-processor (Llama 3, Mistral,
    Gemma); Ollama's converter reads it from tokenizer_config.json alone and writes add_bos_token false into the
    GGUF when it is missing, so Ollama would feed the merged model no BOS where every training row began with one.
    llama.cpp's converter reads either and agrees."""
    import json

    from engine.data.masking import tokenizer_adds_bos

    tokenizer.save_pretrained(str(out))
    path = Path(out) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    adds = tokenizer_adds_bos(tokenizer)
    if config.get("add_bos_token", False) != adds:
        config["add_bos_token"] = adds
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class MergeSource:
    """A finished run checked for a merge: its folder, config and whether its model's own code may run."""
    run_dir: Path
    cfg: Config
    trust_remote_code: bool


def merge_source(run_dir: str | Path, command: str, *, trust_remote_code: bool = False) -> MergeSource:
    """The checks before a merge, cheap, before anything heavy loads: the run is not training, and its config asks
    for the model's own code only where the user allowed it on `command`'s line (shown in the refusal)."""
    from engine.rundir import check_remote_code

    rd = Path(run_dir)
    check_not_training(rd)
    cfg = load_run_config(rd)
    return MergeSource(rd, cfg, check_remote_code(cfg, rd, trust_remote_code, command))


def export_merged(run_dir: str | Path, out: str | Path, *, card: bool = True, trust_remote_code: bool = False,
                  log=None) -> Path:
    """Loads the base the adapter trained against, unquantised (merge_base, in merge_dtype), applies the adapter,
    merges.
    trust_remote_code: the user passed --trust-remote-code (a run directory's config alone never runs code)."""
    source = merge_source(run_dir, f"export {shell_word(Path(run_dir))} --merged {shell_word(out)}",
                          trust_remote_code=trust_remote_code)
    dst = check_empty_out(out)
    if log:
        log(merging_line(source.cfg.quantization))
    with writing(dst) as tmp:
        write_merged(source, tmp, card=card, shown=dst)
    return dst


def write_merged(source: MergeSource, dst: Path, *, card: bool = True, shown: Path | None = None) -> None:
    """The merged model, its tokenizer and generation config (and card) into `dst`: a folder being written (writing's,
    or a part of another export's, which stages the whole once). shown: the path the card gives."""
    # Heavy (torch, peft: seconds): after every check, so a typo is refused at once.
    from peft import PeftModel

    src = adapter_dir(source.run_dir)
    base = merge_base(source.run_dir, source.cfg, merge_dtype()[0], trust_remote_code=source.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(src)).merge_and_unload()
    merged.save_pretrained(str(dst))
    tokenizer = served_tokenizer(src)
    save_tokenizer(tokenizer, dst)  # the run's tokenizer, pad token and chat template included
    save_served_generation_config(src, tokenizer, dst, merged.generation_config)
    if card:
        from engine.export.card import merged_usage, write_card
        from engine.export.facts import run_facts

        write_card(run_facts(source.run_dir), dst, serve_title="Load it",
                   serve_text=merged_usage(shown or dst, source.cfg.quantization, saved=dst))
