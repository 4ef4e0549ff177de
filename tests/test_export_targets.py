"""`lorapilot export RUN --for ollama|vllm|llama.cpp` on the real finished demo run, and the model card."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli, unwrapped

from engine.errors import UserError
from engine.wrap import fit
from engine.rundir import read_metrics

pytestmark = pytest.mark.slow


def _last_eval(run_dir) -> float:
    return [r for r in read_metrics(run_dir) if r["kind"] == "eval"][-1]["eval_loss"]


def _card_is_real(readme: str, run_dir) -> None:
    assert "[More Information Needed]" not in readme
    assert "lorapilot-demo" in readme and "train.jsonl" in readme and "400 rows, format alpaca, prompt format: chat template" in readme
    assert f"{_last_eval(run_dir):.4f}" in readme and "40 of 40" in readme
    assert "Learning curve" in readme and "Hardware | cpu" in readme
    # What the trainer ran on the CPU (train.log: paged AdamW needs a GPU), not only what the config asked for.
    assert "optimizer adamw_torch (config.yaml asks paged_adamw_32bit" in readme
    last_eval_step = [r for r in read_metrics(run_dir) if r["kind"] == "eval"][-1]["step"]
    assert f"(evaluation at step {last_eval_step})" in readme  # the current verdict, not the first one


def test_ollama_export_from_the_command_line(finished_demo_run, tmp_path):
    out = tmp_path / "ollama"
    r = run_cli("export", str(finished_demo_run), "--for", "ollama", "--out", str(out))
    assert r.returncode == 0, r.stderr
    modelfile = (out / "Modelfile").read_text()
    assert "FROM .\n" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    template = (out.parent / "t").parent  # the TEMPLATE is the known-good ChatML one
    from engine.export.ollama import load_templates
    chatml = next(t for t in load_templates() if t.name == "chatml").template
    assert f'TEMPLATE """{chatml}"""' in modelfile, template
    assert "SYSTEM" not in modelfile.split("FROM", 1)[1]  # the demo data has no system prompt
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and (out / "model.safetensors").exists()
    assert "im_start" in json.loads((out / "tokenizer_config.json").read_text()).get("chat_template", "") or \
        (out / "chat_template.jinja").exists()
    readme = (out / "README.md").read_text()
    _card_is_real(readme, finished_demo_run)
    assert "ollama create" in readme and "chatml" in readme
    assert str(out) not in readme   # the folder may be moved: it names itself by no absolute path
    # Never over the user's files.
    r = run_cli("export", str(finished_demo_run), "--for", "ollama", "--out", str(out))
    assert r.returncode == 2 and "not empty" in unwrapped(r.stderr) and "Traceback" not in unwrapped(r.stderr)


def test_vllm_export_writes_the_checked_adapter_and_the_serve_line(finished_demo_run, tmp_path):
    from engine.export import export_for
    from engine.model import resolve_model_path

    said: list[str] = []
    out = export_for("vllm", finished_demo_run, tmp_path / "vllm", log=said.append)
    adapter = out / "adapter"
    # vLLM applies the adapter to the unquantised base, not the NF4 one it trained against: said, with the way out.
    assert any("note: vLLM loads the base unquantised" in s and "--merged DIR" in s for s in said), said
    assert "differs from the one trained" in unwrapped((out / "README.md").read_text())
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16
    assert (adapter / "adapter_model.safetensors").exists()
    serve = (out / "serve.sh").read_text().splitlines()[-1]
    words = shlex.split(serve)
    assert words[:3] == ["exec", "vllm", "serve"] and words[3] == resolve_model_path("lorapilot-demo")
    name = finished_demo_run.name
    assert words[4:10] == ["--enable-lora", "--lora-modules", f"{name}=adapter", "--max-lora-rank",
                           "16", "--chat-template"]
    assert "--generation-config" in words
    _card_is_real((out / "README.md").read_text(), finished_demo_run)
    _card_is_real((adapter / "README.md").read_text(), finished_demo_run)
    (tmp_path / "bin").mkdir()
    _stub(tmp_path / "bin" / "vllm", """a = sys.argv
path = a[a.index("--lora-modules") + 1].split("=", 1)[1]
assert os.path.isfile(os.path.join(path, "adapter_config.json")), path
assert os.path.isfile(a[a.index("--chat-template") + 1]) and os.path.isdir(a[a.index("--generation-config") + 1])
print("served from", os.getcwd())""")
    path = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    # The command the export prints works from where the user is, pasted from an 80-column terminal: it printed the
    # serve line, whose adapter path is the export folder's, wrapped onto three lines.
    shown = fit(next(s for s in said if s.startswith("serve it: ")))
    command = re.search(r"`([^`]+)`", shown).group(1)
    assert "\n" not in command, shown
    r = subprocess.run(command, shell=True, cwd=tmp_path / "bin", capture_output=True, text=True, env=path)
    assert r.returncode == 0 and f"served from {out}" in r.stdout, (shown, r.stderr)
    # The folder moved (or copied to another machine): serve.sh still finds the adapter it names.
    moved = _moved(out, tmp_path)
    r = subprocess.run(["sh", str(moved / "serve.sh")], cwd=tmp_path, capture_output=True, text=True,
                       env=path)
    assert r.returncode == 0 and f"served from {moved}" in r.stdout, r.stderr
    assert str(tmp_path) not in (moved / "serve.sh").read_text() + (moved / "README.md").read_text()


def _moved(folder, tmp_path):
    """The export folder, moved elsewhere: every path it holds of itself must still work."""
    import shutil

    dst = tmp_path / "elsewhere" / "copy"
    dst.parent.mkdir()
    shutil.move(folder, dst)
    return dst


def _stub(path, body: str) -> None:
    """A stand-in for a tool that is not installed here: a Python script that checks the paths it is given."""
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, sys\n{body}\n")
    path.chmod(0o755)


def test_vllm_check_names_what_vllm_would_refuse(finished_demo_run, tmp_path):
    import shutil

    from engine.export.vllm import check_adapter

    assert check_adapter(finished_demo_run / "adapter").problems == []
    bad = tmp_path / "bad"
    shutil.copytree(finished_demo_run / "adapter", bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg.update(r=1024, modules_to_save=["lm_head"], target_modules=[*cfg["target_modules"], "embed_tokens"])
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    problems = "\n".join(check_adapter(bad).problems)
    assert "rank 1024" in problems and "modules_to_save" in problems
    assert "embed_tokens" in problems and "lm_head" in problems and "merged" in problems
    cfg.update(r=20, modules_to_save=None, target_modules=["q_proj"])
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    check = check_adapter(bad)
    assert check.problems == [] and check.max_lora_rank == 32  # the smallest allowed value that holds r=20


def test_llama_cpp_export_prints_the_commands_without_llama_cpp(finished_demo_run, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.export import export_for
    from engine.model import load_base_model

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    said = []
    out = export_for("llama.cpp", finished_demo_run, tmp_path / "gguf", log=said.append)
    merged = out / "merged"
    script = (out / "convert.sh").read_text()
    assert '"$LLAMA_CPP_DIR/convert_hf_to_gguf.py" merged --outfile demo-finished-f16.gguf' in script
    assert "llama-quantize" in script and "Q4_K_M" in script
    assert "--jinja" in (out / "README.md").read_text()
    fake = tmp_path / "llama.cpp"
    _stub(fake / "convert_hf_to_gguf.py", """a = sys.argv
assert os.path.isfile(os.path.join(a[1], "config.json")), a[1]
open(a[a.index("--outfile") + 1], "w").write("f16")""")
    _stub(fake / "build" / "bin" / "llama-quantize", "open(sys.argv[2], 'w').write(open(sys.argv[1]).read() + sys.argv[3])")
    # What the export says to run works from where the user is, pasted from an 80-column terminal (it printed the
    # commands, which name the export folder's files, wrapped: `--outtype f16` pasted as a command of its own).
    shown = fit(next(s for s in said if "llama.cpp not found" in s))
    command = re.search(r"`([^`]+)`", shown).group(1)
    assert "\n" not in command and "LLAMA_CPP_DIR" in shown, shown
    r = subprocess.run(command, shell=True, cwd=fake, capture_output=True, text=True,
                       env={**os.environ, "LLAMA_CPP_DIR": str(fake)})
    assert r.returncode == 0 and (out / "demo-finished-Q4_K_M.gguf").read_text() == "f16Q4_K_M", (shown, r.stderr)
    for made in out.glob("*.gguf"):
        made.unlink()
    # The folder moved (or copied to another machine): convert.sh converts what is in it, into it, from anywhere.
    moved = _moved(out, tmp_path)
    assert str(tmp_path) not in (moved / "convert.sh").read_text() + (moved / "README.md").read_text()
    r = subprocess.run(["sh", str(moved / "convert.sh")], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "LLAMA_CPP_DIR": str(fake)})
    assert r.returncode == 0, r.stderr
    assert (moved / "demo-finished-Q4_K_M.gguf").read_text() == "f16Q4_K_M"
    merged = moved / "merged"
    # The merged model is the adapter applied to the base it trained against (NF4, as the playground loads it).
    tuned = PeftModel.from_pretrained(load_base_model("lorapilot-demo", "nf4", "fp32")[0],
                                      finished_demo_run / "adapter").eval()
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)(ids).logits,
                                   tuned(ids).logits, atol=1e-4, rtol=1e-4)


def test_llama_cpp_folder_that_is_not_one_is_refused_before_any_work(finished_demo_run, tmp_path):
    r = run_cli("export", str(finished_demo_run), "--for", "llama.cpp", "--out", str(tmp_path / "x"),
                "--llama-cpp", str(tmp_path))
    assert r.returncode == 2 and "not a llama.cpp folder" in unwrapped(r.stderr) and not (tmp_path / "x").exists()


def test_plain_adapter_export_carries_the_model_card(finished_demo_run, tmp_path):
    from engine.export import export_adapter

    out = export_adapter(finished_demo_run, tmp_path / "adapter")
    readme = (out / "README.md").read_text()
    _card_is_real(readme, finished_demo_run)
    assert "AutoPeftModelForCausalLM" in readme


def _export(name: str):
    """export_merged, export_adapter (engine.export.merge) or a target's: export_vllm, export_ollama, ..."""
    import importlib

    target = name.removeprefix("export_")
    return getattr(importlib.import_module(f"engine.export.{'merge' if target in ('merged', 'adapter') else target}"),
                   name)


EXPORTS = ["export_merged", "export_adapter", "export_vllm", "export_ollama", "export_llama_cpp"]


@pytest.mark.parametrize("export", EXPORTS)
def test_an_export_stopped_half_way_leaves_no_folder(finished_demo_run, tmp_path, monkeypatch, export):
    """An export interrupted after writing part of its folder (simulated: Ctrl-C as the tokenizer is saved, after
    the merged weights or the adapter's files) leaves nothing at OUT: before, OUT held config.json and the weights,
    a merged model that loads and answers, without the run's chat template, stop tokens and card, or an adapter
    without its tokenizer."""
    import engine.export.merge as merge

    def interrupted(tokenizer, out):
        (Path(out) / "tokenizer.json").write_text("{")
        raise KeyboardInterrupt
    monkeypatch.setattr(merge, "save_tokenizer", interrupted)
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(KeyboardInterrupt):
        _export(export)(finished_demo_run, tmp_path / "out")
    assert os.listdir(tmp_path) == []   # nor a hidden .out.partial-... folder


@pytest.mark.parametrize("export", ["export_vllm", "export_ollama", "export_llama_cpp"])
def test_a_target_export_stages_its_folder_once(finished_demo_run, tmp_path, monkeypatch, export):
    """A target's folder holds the adapter or the merged model: each was staged in a hidden folder of its own inside
    the target's hidden folder, and renamed twice. One staging folder, renamed once, holds the whole export."""
    import engine.export.merge as merge

    staged, writing = [], merge.writing

    def counted(out):
        staged.append(Path(out))
        return writing(out)
    monkeypatch.setattr(merge, "writing", counted)
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    out = _export(export)(finished_demo_run, tmp_path / "out")
    assert staged == [tmp_path / "out"] and os.listdir(tmp_path) == ["out"]
    assert (out / "README.md").is_file()


def test_a_folder_made_at_out_during_an_export_is_left_as_it_was(finished_demo_run, tmp_path, monkeypatch):
    """OUT was free when the export began and someone's folder appeared there before it ended: it is refused
    (exit 2's UserError), that folder untouched; before, the export's files were written in beside the user's."""
    import engine.export.merge as merge

    out, save = tmp_path / "out", merge.save_tokenizer

    def meanwhile(tokenizer, folder):
        save(tokenizer, folder)
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(merge, "save_tokenizer", meanwhile)
    with pytest.raises(UserError, match="written there while exporting"):
        merge.export_adapter(finished_demo_run, out)
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == ["notes.txt"]


def test_a_file_as_out_is_named_a_file(finished_demo_run, tmp_path, capsys):
    from engine.cli import main

    mine = tmp_path / "model.bin"
    mine.write_text("precious")
    assert main(["export", str(finished_demo_run), "--merged", str(mine)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert f"{mine}: exists and is a file" in err and "Traceback" not in err and mine.read_text() == "precious"


def test_exports_stop_where_the_playground_stops_for_an_older_runs_adapter(finished_demo_run, tmp_path):
    """An adapter saved by an older lorapilot carries the stops of its day in generation_config.json (here the EOS
    alone, without the <|im_end|> every answer trained to end with). The playground, chat and samples stop by
    engine.data.stops' rule for the run's tokenizer; the merged model and the vLLM export's --generation-config
    served the old file as it was, and ran on past the answer."""
    import shutil

    from engine.config import load_config
    from engine.data.stops import stop_token_ids
    from engine.export import export_adapter, export_merged
    from engine.playground import prompt_tools

    run = tmp_path / "run"
    shutil.copytree(finished_demo_run, run, ignore=shutil.ignore_patterns("checkpoints", "*.lock"))
    saved = run / "adapter" / "generation_config.json"
    gen = json.loads(saved.read_text())
    tokenizer, _ = prompt_tools(run / "adapter", load_config(run / "config.yaml"))
    gen["eos_token_id"] = tokenizer.eos_token_id
    saved.write_text(json.dumps(gen))
    playground = stop_token_ids(prompt_tools(run / "adapter", load_config(run / "config.yaml"))[0])
    assert len(playground) > 1   # the EOS and the trained end of turn
    for out in (export_merged(run, tmp_path / "merged"), export_adapter(run, tmp_path / "vllm-adapter")):
        served = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
        assert sorted(served if isinstance(served, list) else [served]) == sorted(playground), out


def test_an_unfinished_run_is_refused(tmp_path):
    from engine.export import export_for

    (tmp_path / "config.yaml").write_text("model: lorapilot-demo\ndataset:\n  path: demo/train.jsonl\n")
    with pytest.raises(UserError, match="no finished adapter"):
        export_for("ollama", tmp_path, tmp_path / "out")


async def test_the_monitor_of_a_finished_run_exports_it(finished_demo_run, tmp_path, monkeypatch):
    """The app's export says what `lorapilot export` says: it threw its log away, so the note that vLLM serves the
    adapter over the unquantised base (not the NF4 one the demo trained against) reached only README.md."""
    import time

    from engine.export import default_out, written_line
    from test_monitor_screen import open_export_choice
    from tui.app import LorapilotApp
    from tui.screens.export_done import ExportDone

    monkeypatch.chdir(tmp_path)  # exports land beside the current folder
    app = LorapilotApp(start="monitor", run_dir=str(finished_demo_run))
    out = default_out(finished_demo_run, "vllm")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export_choice(app, pilot)
        await pilot.press("v")
        deadline = time.monotonic() + 300
        while not (out / "serve.sh").exists() or not (out / "README.md").exists():
            assert time.monotonic() < deadline, "the export did not finish"
            await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ExportDone), dialog
        shown = [str(line.render()) for line in dialog.query(".export-line")]
        said: list[str] = []  # the CLI's lines, from the same log, for a second export of the run
        cli_out = tmp_path / "cli-vllm"
        from engine.export import export_for
        export_for("vllm", finished_demo_run, cli_out, log=said.append)
        assert shown == [s.replace(str(cli_out), str(out)) for s in [*said, written_line("vllm", cli_out)]]
        assert any(s.startswith("note: vLLM loads the base unquantised") and "--merged DIR" in s for s in shown)
        # At 80x24 the dialog fits the screen and its last line scrolls into view: readable, not cut.
        box = dialog.query_one("Vertical").region
        assert box.x >= 0 and box.y >= 0 and box.right <= 80 and box.bottom <= 24, box
        log = dialog.query_one("#export-log")
        await pilot.press("end")
        await pilot.pause()
        last = dialog.query(".export-line").last()
        assert log.content_region.contains_region(last.region), (log.content_region, last.region)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ExportDone)
    assert out.parent == tmp_path and "vllm serve" in (out / "serve.sh").read_text()


def test_the_runs_own_adapter_has_a_real_model_card(finished_demo_run):
    readme = (finished_demo_run / "adapter" / "README.md").read_text()
    _card_is_real(readme, finished_demo_run)
    assert "library_name: peft" in readme
