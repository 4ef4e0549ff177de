"""The parts a user waits on import no training stack: the estimate, the wizard app and the monitor.

Each in a fresh interpreter (as harlequin checks its core), so nothing an earlier test imported can hide one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "peft", "datasets", "bitsandbytes")

ENTRY_POINTS = {
    "estimate": ("import engine.estimate as e, engine.estimate.command\n"
                 "from engine.config import config_from_dict\n"
                 "cfg = config_from_dict({'model': 'llama-3-8b', 'dataset': {'path': 'x.jsonl'}})\n"
                 "e.estimate(cfg, e.read_model_config(cfg.model), e.get_gpu('a10'), n_examples=10)\n"),
    "wizard app": ("import tui.entry, tui.app\n"
                   "import tui.screens.wizard, tui.screens.model, tui.screens.dataset, tui.screens.hyperparams\n"
                   "import tui.screens.review\n"
                   "tui.app.LorapilotApp()\n"),
    "monitor": "import tui.screens.monitor, tui.screens.runs, tui.screens.sweep_monitor, engine.train.launch\n",
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_imports_no_training_stack(name):
    code = ENTRY_POINTS[name] + f"import sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [], f"{name} imported {r.stdout.strip()}"



@pytest.mark.parametrize("lines", [['{"instruction": "a", "output": "b"}', '{bad'],
                                   ['{"instruction": "a", "output": "b"}', '{"instruction": "a"}']],
                         ids=["bad JSON line", "missing key"])
def test_inspect_data_refuses_a_broken_file_before_loading_the_tokenizer(tmp_path, lines):
    """inspect-data on a broken dataset says so at once: the rows are read and checked before the tokenizer
    (transformers, torch: seconds of CPU) loads."""
    data = tmp_path / "broken.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code = ("import sys, json\nfrom engine.cli import main\n"
            f"rc = main(['inspect-data', {str(data)!r}])\n"
            f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rc, heavy = json.loads(r.stdout.strip().splitlines()[-1])
    assert rc == 2 and "broken.jsonl:2" in r.stderr, r.stderr
    assert heavy == [], f"inspect-data imported {heavy} before refusing the file"
