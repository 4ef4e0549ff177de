"""`lorapilot export`: a finished run as an adapter, a merged model, or a folder Ollama, vLLM or llama.cpp serve.

One module per target (ollama, vllm, llama_cpp), the plain adapter and merge in merge.py, the model card every
export carries in card.py, and what they all read of the run directory in facts.py.
"""

from __future__ import annotations

from pathlib import Path

from engine.export.merge import adapter_dir, export_adapter, export_merged

__all__ = ["TARGETS", "adapter_dir", "default_out", "export_adapter", "export_for", "export_merged", "written_line"]

TARGETS = ("ollama", "vllm", "llama.cpp")


def default_out(run_dir: str | Path, target: str) -> Path:
    """Beside the current folder, named after the run: the run directory itself is only read."""
    from engine.export.facts import model_name

    return Path.cwd() / f"{model_name(Path(run_dir))}-{target.replace('.', '')}"


def written_line(target: str, out: Path) -> str:
    """The line an export for `target` ends with, after its log: in `lorapilot export` and in the app."""
    return f"{target} export written to {out} (see {out / 'README.md'})"


def export_for(target: str, run_dir: str | Path, out: str | Path | None = None, *, llama_cpp: str | None = None,
               trust_remote_code: bool = False, log=print) -> Path:
    """Exports a finished run for `target` (one of TARGETS) into `out` (new or empty); returns the folder.
    trust_remote_code: the user passed --trust-remote-code, for a merge (Ollama, llama.cpp) of a run that asks it."""
    out = Path(out) if out else default_out(run_dir, target)
    if target == "ollama":
        from engine.export.ollama import export_ollama
        return export_ollama(run_dir, out, trust_remote_code=trust_remote_code, log=log)
    if target == "vllm":
        from engine.export.vllm import export_vllm
        return export_vllm(run_dir, out, log=log)
    if target == "llama.cpp":
        from engine.export.llama_cpp import export_llama_cpp
        return export_llama_cpp(run_dir, out, llama_cpp=llama_cpp, trust_remote_code=trust_remote_code,
                                log=log)
    raise ValueError(f"unknown export target {target!r}")
