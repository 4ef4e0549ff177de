"""`lorapilot export`: the adapter as is, or merged into the 16-bit base for serving."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.errors import UserError
from engine.rundir import ADAPTER_DIR, CONFIG_FILE


def _run_config(run_dir: Path):
    from engine.config import load_config

    if not (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return load_config(run_dir / CONFIG_FILE)


def adapter_dir(run_dir: str | Path) -> Path:
    rd = Path(run_dir)
    ad = rd / ADAPTER_DIR
    if not (ad / "adapter_config.json").exists():
        raise UserError(f"{rd}: has no finished adapter ({ad} is missing)",
                        fix="wait for the run to finish, or resume it: lorapilot train --resume " + str(rd))
    return ad


def export_adapter(run_dir: str | Path, out: str | Path) -> Path:
    src = adapter_dir(run_dir)
    dst = Path(out)
    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst}: exists and is not empty")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """Loads the base unquantised in 16-bit (32-bit on the CPU), applies the adapter, merges."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.model import load_tokenizer, resolve_model_path

    rd = Path(run_dir)
    cfg = _run_config(rd)
    src = adapter_dir(rd)
    dst = Path(out)
    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst}: exists and is not empty")
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model), dtype=dtype,
                                                trust_remote_code=cfg.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(src)).merge_and_unload()
    merged.save_pretrained(str(dst))
    load_tokenizer(str(src)).save_pretrained(str(dst))  # the run's tokenizer, pad token included
    gen = src / "generation_config.json"
    if gen.exists():
        shutil.copy(gen, dst / "generation_config.json")
    return dst
