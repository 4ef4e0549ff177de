"""Steps and time: the wizard, `lorapilot estimate` (table and --json) and the sweep read one function
(engine.estimate.command.estimate_for) and show the same numbers for the same config (issue 22: the wizard said
`<1 s` for the demo on a T4 while `lorapilot estimate --gpu T4` said `about 1 min`)."""

from __future__ import annotations

import json

import pytest
import yaml

from engine.config import config_from_dict
from tests.conftest import DEMO_CONFIG, unwrapped

STEPS = 30   # the sweep's steps are a multiple of 3


@pytest.fixture
def demo_cfg_path(tmp_path):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["dataset"]["path"] = str(DEMO_CONFIG.parent / raw["dataset"]["path"])
    raw["training"]["max_steps"] = STEPS
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


@pytest.mark.parametrize("gpu_name,compile_layers", [("t4", "auto"), ("h200-141", "auto"), (None, "auto"),
                                                    ("h200-141", True)])
def test_the_wizard_the_cli_and_the_sweep_time_a_config_with_one_function(gpu_name, compile_layers, demo_cfg_path,
                                                                           demo_model_dir, monkeypatch, capsys):
    import engine.estimate as estimate_pkg
    from engine.data import inspect_config
    from engine.estimate import command, get_gpu, read_model_config
    from engine.estimate.timing import duration_text
    from engine.sweep.cost import trial_time_model
    from engine.sweep.plan import Trial
    from tui.models.wizard_engine_calls import estimate_and_check

    path, raw = demo_cfg_path
    raw["training"]["compile"] = compile_layers
    path.write_text(yaml.safe_dump(raw))
    cfg = config_from_dict(raw)
    gpu = get_gpu(gpu_name) if gpu_name else None
    monkeypatch.setattr(estimate_pkg, "detect_gpu", lambda: None)   # no card here: the CLI plans for this CPU
    seen: list = []
    real = command.estimate_for

    def spy(*args, **kwargs):
        est, n = real(*args, **kwargs)
        seen.append(est)
        return est, n

    monkeypatch.setattr(command, "estimate_for", spy)
    gpu_flag = ["--gpu", gpu_name] if gpu_name else []

    # lorapilot estimate --json, and the table
    assert command.main([str(path), "--json", *gpu_flag]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert command.main([str(path), *gpu_flag]) == 0
    table = capsys.readouterr().out
    assert len(seen) == 2

    # the wizard's review, with the examples it tokenized (the trainer's preparation)
    report, examples = inspect_config(cfg)
    info = read_model_config(cfg.model)
    wizard_est, _, _, error = estimate_and_check(cfg, info, gpu, report.n_train, None, report, examples, False)
    assert error is None and len(seen) == 3 and seen[-1] is wizard_est

    # the sweep's trial time, for a trial of the config's own lr and r
    lengths = [len(e) for e in examples]
    model = trial_time_model(cfg, [Trial(cfg.training.learning_rate, cfg.lora.r)], gpu, n_train=report.n_train,
                             n_val=report.n_validation, lengths=lengths, val_lengths=report.validation_lengths)
    trial_s = model.seconds(STEPS)
    sweep_est = seen[-1]
    assert len(seen) >= 4

    assert (wizard_est.total_steps, wizard_est.time_s, wizard_est.time_basis, wizard_est.evaluations) == (
        cli["total_steps"], pytest.approx(cli["time_s"], abs=1e-3), cli["time_basis"], cli["evaluations"])
    # a trial evaluates and saves on its own schedule (every third of its steps, no samples): its steps alike
    assert (sweep_est.total_steps, sweep_est.time_basis) == (cli["total_steps"], cli["time_basis"])
    assert sweep_est.time_s - sweep_est.pauses_s == pytest.approx(cli["time_s"] - cli["pauses_s"], abs=1e-3)
    assert (sweep_est.evaluations, sweep_est.saves) == (3, 4)
    assert cli["total_steps"] == STEPS and cli["time_s"] is not None   # the demo on an H200: a fraction of a second
    assert model.time_basis == cli["time_basis"]
    # the trial's time is the estimate's: its evaluations and its start-up (the same model and data: the same one)
    assert trial_s == pytest.approx(sweep_est.time_s)
    assert sweep_est.startup_s == pytest.approx(cli["startup_s"], abs=1e-3) and cli["startup_s"] > 0
    assert wizard_est.startup_s == pytest.approx(cli["startup_s"], abs=1e-3)
    start_up = duration_text(cli["startup_s"]).lstrip("~")
    assert f"time   {duration_text(cli['time_s'])} on " in table
    assert f"incl. {start_up} start-up, 3 evals, 3 saves" in table
    assert cli["time_basis"] in table
    if gpu_name is None:
        assert cli["time_basis"] == "this machine's CPU"
    elif gpu_name == "t4":
        assert cli["time_basis"].startswith("not measured on T4: assumes the H100's measured efficiency")
    else:
        assert cli["time_basis"] == "measured on H200"
    # a plan that compiles its layers (asked for here; auto leaves a 30-step run eager): all three time it so
    compiled = compile_layers is True
    assert cli["plan"]["compile_layers"] is compiled and wizard_est.plan.compile_layers is compiled
    assert sweep_est.plan.compile_layers is compiled
    assert ("includes ~70 s compiling the layers before the first step" in unwrapped(table)) is compiled


@pytest.fixture
def no_gpu_here(monkeypatch):
    import engine.estimate as estimate_pkg
    import tui.models.wizard_engine_calls as engine_calls

    def presets_only():
        from engine.estimate import list_gpus
        return list_gpus(), None

    monkeypatch.setattr(engine_calls, "detect_gpus", presets_only)
    monkeypatch.setattr(estimate_pkg, "detect_gpu", lambda: None)  # the CLI below: no card either


@pytest.mark.timeout(600)
async def test_with_no_gpu_the_wizard_plans_this_cpu_as_the_cli_does_until_a_card_is_picked(
        no_gpu_here, demo_cfg_path, demo_model_dir, capsys):
    """It used to pick the first preset (a T4): its memory and a `<1 s` time for a run Launch trains here."""
    from engine.estimate import command
    from tui.app import LorapilotApp
    from tui.wizard_state import CPU
    from wizard_pilot import settle, shown

    path, _ = demo_cfg_path
    assert command.main([str(path), "--json"]) == 0        # `lorapilot estimate CONFIG` on this machine
    cli = json.loads(capsys.readouterr().out)
    assert cli["time_basis"] == "this machine's CPU"

    app = LorapilotApp(config_path=str(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        s = app.wizard
        assert s.gpu_options()[0] == ("no GPU: this machine's CPU", CPU)
        assert s.gpu_key == CPU and s.gpu is None and s.estimate.gpu is None
        assert (s.estimate.total_steps, s.estimate.time_basis) == (cli["total_steps"], cli["time_basis"])
        assert s.estimate.time_s == pytest.approx(cli["time_s"], abs=1e-3)
        assert "no GPU: ~" in shown(app, "EstimateLine") and " on this CPU if idle" in shown(app, "EstimateLine")
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        await settle(app, pilot)
        assert "the run trains on this machine's CPU" in shown(app, "#fit-verdict")
        micro = s.cfg.training.micro_batch_size
        await pilot.press("ctrl+f")        # no card to fit: only the length the data needs, nothing sized to a card
        await settle(app, pilot)
        assert s.cfg.training.max_seq_length == 64 and s.cfg.training.micro_batch_size == micro
        await pilot.press("ctrl+f")        # nothing left: said so
        await settle(app, pilot)
        assert any("no card to fit" in n.message for n in app._notifications)

        s.select_gpu("t4")                                 # planning for a rented pod: the card's plan
        await settle(app, pilot)
        assert s.estimate.gpu is not None and s.estimate.gpu.id == "t4"
        assert s.estimate.time_basis.startswith("not measured on T4")
        assert "no GPU" not in shown(app, "EstimateLine") and "on this CPU" not in shown(app, "EstimateLine")
        assert "estimating for the card picked" in shown(app, "#fit-verdict")
        app.exit()
