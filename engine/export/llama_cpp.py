"""`lorapilot export RUN --for llama.cpp`: the merged model and the exact GGUF conversion commands.

llama.cpp converts a Hugging Face folder with its own script (convert_hf_to_gguf.py, which ships in the
llama.cpp source tree, not in the `gguf` package on PyPI: that package reads and writes GGUF files but has no
model converter) and quantises with its llama-quantize binary. No maintained package converts offline without
llama.cpp, so lorapilot writes no converter of its own: it runs llama.cpp's when it is found (--llama-cpp DIR or
$LLAMA_CPP_DIR), else prints the commands and writes them to convert.sh. The GGUF carries the run's chat
template (from chat_template.jinja, which transformers 5 saves beside tokenizer_config.json and llama.cpp's converter
reads, gguf-py/gguf/vocab.py), so `llama-server --jinja` renders what training rendered.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from engine.errors import UserError, shell_word

ENV_VAR = "LLAMA_CPP_DIR"
CONVERTER = "convert_hf_to_gguf.py"
QUANTIZE = "llama-quantize"
DEFAULT_QUANT = "Q4_K_M"


def find_llama_cpp(given: str | None) -> Path | None:
    """The llama.cpp folder from --llama-cpp or $LLAMA_CPP_DIR; a folder named but unusable is an error."""
    folder = given or os.environ.get(ENV_VAR)
    if not folder:
        return None
    root = Path(folder).expanduser().resolve()   # the conversion runs in the export folder
    if not (root / CONVERTER).is_file():
        source = "--llama-cpp" if given else f"${ENV_VAR}"
        raise UserError(f"{root}: not a llama.cpp folder ({source}; no {CONVERTER} in it)",
                        fix="point it at a llama.cpp checkout (git clone of ggml-org/llama.cpp, built with cmake)")
    return root


def find_quantize(root: Path | None) -> Path | None:
    for candidate in ([root / "build" / "bin" / QUANTIZE, root / "bin" / QUANTIZE, root / QUANTIZE] if root else []):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(QUANTIZE)
    return Path(found) if found else None


MERGED_DIR = "merged"


def gguf_name(name: str, quant: str) -> str:
    return f"{name}-{quant}.gguf"


def commands(root: Path | None, name: str, quant: str, quantize: Path | None = None) -> list[list[str]]:
    """The conversion, then the quantisation, run in the export folder: its files by relative paths (the folder
    may be moved), llama.cpp's of a found llama.cpp, else the placeholder $LLAMA_CPP_DIR."""
    base = str(root) if root else f"${ENV_VAR}"
    f16 = gguf_name(name, "f16")
    quantize_bin = str(quantize) if quantize else f"{base}/build/bin/{QUANTIZE}"
    python = sys.executable if root else "python"
    return [[python, f"{base}/{CONVERTER}", MERGED_DIR, "--outfile", f16, "--outtype", "f16"],
            [quantize_bin, f16, gguf_name(name, quant), quant]]


def _shell(cmd: list[str]) -> str:
    # $LLAMA_CPP_DIR must stay a variable in the printed line, so those words are double-quoted, not escaped.
    return " ".join(f'"{w}"' if w.startswith(f"${ENV_VAR}") else shlex.quote(w) for w in cmd)


def export_llama_cpp(run_dir: str | Path, out: str | Path, *, llama_cpp: str | None = None,
                     quant: str = DEFAULT_QUANT, trust_remote_code: bool = False, log=print) -> Path:
    from engine.export.card import write_card
    from engine.export.facts import run_facts
    from engine.export.merge import check_empty_out, merge_source, merging_line, write_merged, writing
    from engine.export.script import write_script

    root = find_llama_cpp(llama_cpp)  # before the merge: a wrong folder costs nothing
    dst = check_empty_out(out).resolve()
    source = merge_source(run_dir, f"export {shell_word(Path(run_dir))} --for llama.cpp --out {shell_word(dst)}",
                          trust_remote_code=trust_remote_code)
    facts = run_facts(run_dir)
    merged = dst / MERGED_DIR
    log(merging_line(facts.cfg.quantization))
    quantize = find_quantize(root)
    cmds = commands(root, facts.name, quant, quantize)
    script = "\n".join(_shell(c) for c in cmds)
    with writing(dst) as tmp:  # the merged model and convert.sh whole, or no folder; the GGUF is made in it then
        write_merged(source, tmp / MERGED_DIR, shown=merged)
        write_script(tmp / "convert.sh", f"the merged model to GGUF ({quant}).", script)
    ran = []
    if root:
        for cmd in cmds if quantize else cmds[:1]:
            log("running: " + _shell(cmd))
            result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=dst)
            if result.returncode != 0:
                tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
                raise UserError(f"llama.cpp failed ({Path(cmd[1] if cmd[0] == sys.executable else cmd[0]).name}, "
                                f"exit {result.returncode}):\n{tail}",
                                fix=f"the merged model is in {merged}; the commands are in {dst / 'convert.sh'}")
            ran.append(cmd)
        if not quantize:
            log(f"{QUANTIZE} not found (built llama.cpp? cmake -B build && cmake --build build): run the last line "
                f"of {dst / 'convert.sh'} once it is")
    else:
        # convert.sh, not its lines: they name files from the export's folder, and wrapped for 80 columns each
        # pasted as two commands (`--outtype f16` alone).
        log(f"llama.cpp not found (--llama-cpp DIR or ${ENV_VAR}); to make the GGUF once it is built, set "
            f"{ENV_VAR} to its folder and run `{shell_word(dst / 'convert.sh')}` (its commands are in README.md)")
    gguf = gguf_name(facts.name, quant)
    usage = (f"The merged model is in `{MERGED_DIR}/`. To GGUF, with llama.cpp's own tools, in this folder "
             + ("(already run by lorapilot):" if len(ran) == len(cmds) else "(`convert.sh` runs them from anywhere):")
             + f"\n\n```sh\n{script}\n```\n\nThen chat with it; `--jinja` makes llama.cpp use the chat template the "
             f"run trained with, which the GGUF carries:\n\n```sh\nllama-server -m {gguf} --jinja\n"
             f"llama-cli -m {gguf} --jinja -cnv\n```")
    write_card(facts, dst, serve_title="Serve it with llama.cpp", serve_text=usage)
    return dst
