"""Every line a verb prints fits an 80-column terminal (SSH, tmux), on the embedded demo: prose is wrapped at word
boundaries under its label; no training here (the diagnosis reads a metrics file written for it)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from functools import partial

import pytest

from conftest import DEMO_CONFIG, REPO, run_cli, together

from engine.cli import build_parser

DEMO_DATA = REPO / "presets" / "demo" / "train.jsonl"


def _too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > 80]


def _metrics(tmp_path):
    """A demo-sized run's records whose eval loss is still falling: the diagnosis has long prose to print."""
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"kind": "train", "step": s, "time": 1000.0 + s, "loss": 4.0 - s / 20} for s in range(2, 41, 2)]
    recs += [{"kind": "eval", "step": s, "time": 1000.5 + s, "eval_loss": 4.0 - s / 25} for s in (10, 20, 30, 40)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(recs, key=lambda r: r["time"])))
    return run


def test_every_verbs_help_fits_80_columns(monkeypatch):
    """argparse's help, in this process (a process each cost ~2 s on a loaded 2-core machine): it reads COLUMNS
    when it formats, as it does in the user's terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    verbs = [a for a in build_parser()._subparsers._group_actions[0].choices]   # noqa: SLF001 - argparse's own
    for args in [("--help",), *[(v, "--help") for v in verbs]]:
        with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as done:
            build_parser().parse_args(list(args))
        assert done.value.code == 0 and out.getvalue(), args
        assert _too_wide(out.getvalue()) == [], args
        # wrapped at spaces: a name is never cut at its hyphen (`meta-` / `llama/Llama-2-70b-hf`), to be copied whole
        assert [line for line in out.getvalue().splitlines() if re.search(r"\w-$", line)] == [], args


def test_every_verb_of_the_console_script_has_its_help(capsys):
    """`lorapilot playground RUN_DIR` opened the app, but `lorapilot --help` did not list it and
    `lorapilot playground --help` answered "invalid choice: 'playground'"."""
    from tui.entry import APP_VERBS, main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    for verb in APP_VERBS:
        assert f"\n    {verb} " in listed, verb
        with pytest.raises(SystemExit) as done:
            main([verb, "--help"])
        assert done.value.code == 0 and f"usage: lorapilot {verb}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def verbs_at_80(tmp_path_factory):
    """Each verb run once at 80 columns, side by side (each is a process of its own, started as a user starts it):
    {verb: (args, result)}; the estimate is read by two tests."""
    tmp_path = tmp_path_factory.mktemp("verbs")
    calls = [("estimate", str(DEMO_CONFIG)), ("inspect-data", str(DEMO_DATA)),
             ("sweep", str(DEMO_CONFIG), "--dry-run"), ("diagnose", str(_metrics(tmp_path))),
             ("runs", "--root", str(tmp_path))]
    results = together(*[partial(run_cli, *args, env={"COLUMNS": "80"}) for args in calls])
    return {args[0]: (args, r) for args, r in zip(calls, results)}


def test_every_verb_fits_80_columns_on_the_demo(verbs_at_80):
    for args, r in verbs_at_80.values():
        assert r.returncode == 0, (args, r.stderr)
        assert _too_wide(r.stdout) == [], args
        if args[0] == "diagnose" and args[1] != "--help":
            assert "underfit so far" in r.stdout   # the diagnosis had prose to wrap


def test_a_tables_wrapped_note_continues_under_the_note():
    """estimate's memory table: a note's second line began under the GiB column, not under the note."""
    from engine.wrap import fit

    row = ("   base weights                0.00 GiB  decoder linear layers, NF4 + double-quant constants, and more "
           "words")
    lines = fit(row, 80).split("\n")
    note_at = row.index("decoder")
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert all(len(line) - len(line.lstrip()) == note_at for line in lines[1:]), lines
    label = "batch  285 tokens in the largest micro-batch, fp32, memory fast (auto), 155,648 trainable LoRA params"
    assert fit(label, 80).split("\n")[1].startswith(" " * 7 + "trainable")   # label lines as before


def test_estimates_memory_notes_wrap_under_their_column(verbs_at_80):
    _, r = verbs_at_80["estimate"]
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("base weights"))
    note_at = lines[row].index("GiB  ") + len("GiB  ")
    assert lines[row + 1].startswith(" " * note_at) and lines[row + 1][note_at] != " ", lines[row:row + 2]
    assert not _too_wide(r.stdout)


def test_export_notes_fit(tmp_path, capsys, monkeypatch):
    """The export's notes are a sentence or two each (DeepSeek-R1's prefill, a system prompt left out)."""
    import engine.export as export
    from engine.data.prefill import prefill_note

    def fake_export_for(target, run_dir, out, *, llama_cpp=None, trust_remote_code=False, log=print):
        log(f"note: {prefill_note('<think>' + chr(10), True)}")
        return tmp_path
    monkeypatch.setattr(export, "export_for", fake_export_for)
    from engine.cli import main
    assert main(["export", str(tmp_path), "--for", "ollama", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "without that prefill" in err.replace("\n", " ") and not _too_wide(err), err


def test_a_bad_inputs_message_fits_80_columns_and_keeps_its_path_whole(tmp_path):
    """Errors were printed unwrapped (a config problem's line ran to 150 columns); wrapped now as every verb's output
    is, a path longer than a line kept whole on a line of its own: users copy it."""
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "config.yaml"
    deep.parent.mkdir()
    deep.write_text(f"model: lorapilot-demo\ndataset: {{path: {DEMO_DATA}}}\n"
                    "training: {learning_rate: [1, 2], lr_sheduler: cosine, num_epochs: 1000000000000000}\n")
    r = run_cli("estimate", str(deep), env={"COLUMNS": "80"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert _too_wide(r.stderr) == [f"{deep}:"], r.stderr        # the path, alone on its line
    assert "training.lr_sheduler: unknown key; did you mean 'lr_scheduler'?" in r.stderr.replace("\n    ", " ")


def test_an_errors_problems_and_fix_continue_under_their_text_and_a_command_stays_whole():
    from engine.errors import UserError
    from engine.wrap import fit

    command = "`lorapilot train --resume runs/a-run-with-a-rather-long-name-indeed-2024-12-05`"
    e = UserError("x.csv:3: 3 fields, but the header has 2", problems=["a problem " * 10],
                  fix=f"quote a text that holds a comma, or remove the extra fields, then run {command}")
    lines = fit(f"lorapilot: {e}").split("\n")
    assert lines[-1] == " " * 7 + command, lines     # whole, on a line of its own under the fix's text (85 columns)
    assert _too_wide("\n".join(lines[:-1])) == [], lines
    assert lines[1].startswith("  - a problem") and lines[2].startswith("    problem a"), lines
    assert lines[3].startswith("  fix: quote"), lines


@pytest.mark.parametrize("path", ["/data/my training set/train.jsonl", "/data/my data set.jsonl"])
def test_a_path_with_spaces_is_not_split_at_its_spaces(path):
    """fit() broke a message at the spaces inside a path ("/data/my training" | "set/train.jsonl"): neither half
    can be copied. The path moves to the next line whole; the words around it still wrap."""
    from engine.wrap import fit

    for lead in range(50, 80):
        text = f"lorapilot: {'x' * (lead - 11)} {path}: line 3: expected a JSON object, got a list"
        lines = fit(text).split("\n")
        assert any(path in line for line in lines), lines
        assert _too_wide("\n".join(lines)) == [], lines


def test_a_run_directory_with_spaces_is_kept_whole(tmp_path, monkeypatch):
    """A folder on disk whose last part holds a space (runs/my run) has no "/" or extension after the space: it
    is known by being there."""
    from engine.wrap import fit

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "my run").mkdir(parents=True)
    for lead in range(1, 80):
        lines = fit(f"left running: {'y' * lead} `lorapilot monitor` to watch runs/my run later on").split("\n")
        assert any("runs/my run" in line for line in lines), lines
