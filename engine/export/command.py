"""The `export` verb's arguments and run: argparse in, engine.export calls out."""

from __future__ import annotations

import argparse
import sys

from engine.errors import EXIT_OK
from engine.settings import user_path


def add_arguments(x: argparse.ArgumentParser) -> None:
    from engine.export import TARGETS

    x.add_argument("run_dir", type=user_path, help="the finished run folder whose adapter to export (runs/<name>)")
    x.add_argument("--for", dest="target", choices=TARGETS,
                   help="a folder ready for this server: ollama (merged model + Modelfile), vllm (adapter + "
                        "serve.sh), llama.cpp (merged model + GGUF conversion)")
    x.add_argument("--out", type=user_path,
                   help="the folder to write (new or empty); without --for: copy the adapter here")
    x.add_argument("--merged", metavar="OUT", type=user_path,
                   help="write the base merged with the adapter (bf16; fp32 without a GPU) here")
    x.add_argument("--trust-remote-code", action="store_true",
                   help="run the model folder's own Python code when the run's config.yaml asks for it")
    x.add_argument("--llama-cpp", metavar="DIR", type=user_path,
                   help="llama.cpp folder, to run its conversion (default: $LLAMA_CPP_DIR; else the commands are "
                        "printed)")


def run(a: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.export import adapter_dir, export_adapter, export_for, export_merged, written_line
    from engine.model import quiet_progress_bars
    from engine.wrap import fit

    def log(msg: str) -> None:  # notes are prose (a template's prefill, a system prompt left out): wrapped
        print(fit(msg), file=sys.stderr, flush=True)

    if a.target or a.merged:
        quiet_progress_bars()  # a model is loaded and written: transformers' bars are noise beside our own lines
    if a.target:
        if a.merged:
            raise UserError("give either --for TARGET or --merged OUT, not both")
        out = export_for(a.target, a.run_dir, a.out, llama_cpp=a.llama_cpp, trust_remote_code=a.trust_remote_code,
                         log=log)
        print(written_line(a.target, out))
    elif a.llama_cpp:
        raise UserError("--llama-cpp goes with --for llama.cpp")
    elif a.merged:
        merged = export_merged(a.run_dir, a.merged, trust_remote_code=a.trust_remote_code, log=log)
        print(f"merged model written to {merged}")
    elif a.out:
        print(f"adapter copied to {export_adapter(a.run_dir, a.out)}")
    else:
        print(adapter_dir(a.run_dir))  # alone on stdout: `$(lorapilot export RUN)` is the adapter's folder
        log("nothing written: that is the run's adapter, as trained. Add --out DIR to copy it, --merged DIR to "
            "merge it into the base model, or --for ollama|vllm|llama.cpp for a folder a server loads.")
    return EXIT_OK
