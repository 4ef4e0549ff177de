"""Every line a verb prints fits an 80-column terminal (SSH, tmux), on the embedded demo: prose is wrapped at word
boundaries under its label; no training here (the diagnosis reads a metrics file written for it)."""

from __future__ import annotations

import json

from conftest import DEMO_CONFIG, REPO, run_cli

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


def test_every_verb_fits_80_columns_on_the_demo(tmp_path):
    verbs = [a for a in build_parser()._subparsers._group_actions[0].choices]   # noqa: SLF001 - argparse's own
    calls = [("--help",), *[(v, "--help") for v in verbs],
             ("estimate", str(DEMO_CONFIG)), ("inspect-data", str(DEMO_DATA)),
             ("sweep", str(DEMO_CONFIG), "--dry-run"), ("diagnose", str(_metrics(tmp_path))),
             ("runs", "--root", str(tmp_path))]
    for args in calls:
        r = run_cli(*args, env={"COLUMNS": "80"})
        assert r.returncode == 0, (args, r.stderr)
        assert _too_wide(r.stdout) == [], args
        if args[0] == "diagnose" and args[1] != "--help":
            assert "underfit so far" in r.stdout   # the diagnosis had prose to wrap
