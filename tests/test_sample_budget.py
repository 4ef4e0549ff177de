"""Which decoder the trainer's samples use, and when they are skipped: the budget on a clock, with the H200's
measured costs (benchmarks/results/h200-2026-12-02.md)."""

import pytest

from engine.rundir import read_metrics
from engine.train import sample_budget as sb

STEP_S = 0.87        # the default's step on Llama-3-8B, H200
EVERY = 50           # eval_steps, the default
GENERATE_S = 11.65   # one batch of 3 prompts x 128 tokens through generate, Llama-2-7B, H200
FAST_FIRST_S, FAST_S = 57.0, 1.68


def simulate(budget: sb.SampleBudget, steps: int) -> tuple[list[str | None], float]:
    """Each evaluation's decoder (None: skipped) over a run of `steps`, and the samples' share of its time."""
    clock, ways = 0.0, []
    for k in range(1, steps // EVERY + 1):
        clock += EVERY * STEP_S
        way = budget.next_batch(clock, (steps - k * EVERY) * STEP_S)
        ways.append(way)
        if way:
            cost = GENERATE_S if way == "generate" else (FAST_FIRST_S if budget.batches == 0 else FAST_S)
            clock += cost
            budget.record(cost)
    return ways, budget.spent / clock


def test_fast_decode_pays_off_only_for_long_runs():
    assert not sb.fast_pays_off(10 * 60)
    assert sb.fast_pays_off(60 * 60)
    # the break-even: the share of the rest of the run, less generate's, equals the first call
    edge = sb.FAST_FIRST_CALL_S / (sb.SAMPLE_TIME_SHARE * (1 - 1 / sb.FAST_SPEEDUP))
    assert not sb.fast_pays_off(edge * 0.99) and sb.fast_pays_off(edge * 1.01)


def test_a_long_gpu_run_samples_with_fast_decode_and_more_often():
    steps = 10_000  # 2.4 hours at 0.87 s a step
    fast_ways, fast_share = simulate(sb.SampleBudget(fast_allowed=True), steps)
    gen_ways, gen_share = simulate(sb.SampleBudget(fast_allowed=False), steps)
    assert fast_ways[0] == "compile" and set(fast_ways) <= {"compile", None}
    assert gen_ways[0] == "generate" and set(gen_ways) <= {"generate", None}
    n_fast, n_gen = sum(w is not None for w in fast_ways), sum(w is not None for w in gen_ways)
    assert n_fast > 2 * n_gen
    assert all(fast_ways[-50:])  # once the compile is paid for, every evaluation samples
    assert fast_share <= sb.SAMPLE_TIME_SHARE and gen_share <= sb.SAMPLE_TIME_SHARE


def test_a_short_gpu_run_samples_with_generate():
    ways, _ = simulate(sb.SampleBudget(fast_allowed=True), 600)  # under 9 minutes
    assert ways[0] == "generate"


@pytest.mark.parametrize("forced, steps", [("generate", 10_000), ("compile", 600), ("eager", 600)])
def test_the_environment_variable_overrides_the_choice(forced, steps):
    ways, _ = simulate(sb.SampleBudget(fast_allowed=True, forced=forced), steps)
    assert ways[0] == forced and set(ways) <= {forced, None}


def test_the_batch_after_the_compile_samples_once_the_share_allows_it():
    budget = sb.SampleBudget(fast_allowed=True)
    assert budget.next_batch(60.0, 3 * 3600) == "compile"
    budget.record(FAST_FIRST_S)
    # 57 s spent: 5 % of the run's time covers it from 1,140 s on; the next batch is not charged in advance
    assert budget.next_batch(1100.0, 3 * 3600) is None
    assert budget.next_batch(1150.0, 3 * 3600) == "compile"
    budget.record(FAST_S)
    # from now on its measured cost counts
    assert budget.next_batch(sb.SAMPLE_FREE_S + budget.spent / sb.SAMPLE_TIME_SHARE - 1.0, 3600) is None


def test_a_failed_fast_decode_goes_on_with_generate():
    budget = sb.SampleBudget(fast_allowed=True)
    assert budget.next_batch(60.0, 3 * 3600) == "compile"
    budget.record(20.0, fell_back=True)
    assert budget.next_batch(10_000.0, 3600) == "generate"


def test_the_kv_cache_of_llama_2_7b_and_llama_3_8b():
    from types import SimpleNamespace

    llama2 = SimpleNamespace(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, hidden_size=4096)
    llama3 = SimpleNamespace(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096)
    # the default 3 prompts, the longest 410 tokens, + 128 new: keys and values, bf16
    assert sb.kv_cache_bytes(llama2, 3, 538) == 2 * 32 * 32 * 128 * 3 * 538 * 2  # 0.79 GiB
    assert sb.kv_cache_bytes(llama3, 3, 538) * 4 == sb.kv_cache_bytes(llama2, 3, 538)  # grouped-query attention


def test_fast_decode_needs_room_beside_training_s_peak():
    gib = 1024 ** 3
    cache = 0.8 * gib
    assert sb.fast_decode_fits(9.4 * gib, 80 * gib, cache)           # Llama-3-8B's default on an 80 GB card
    assert not sb.fast_decode_fits(21.5 * gib, 24 * gib, cache)      # a run at the edge of a 24 GB card
    assert sb.fast_decode_fits(20.0 * gib, 24 * gib, cache)


@pytest.mark.parametrize("fast_ok, room, max_steps, first_way", [
    (True, True, 20_000, "compile"), (True, True, 300, "generate"), (False, True, 20_000, "generate"),
    (True, False, 20_000, "generate")])
def test_callback_passes_the_chosen_decoder(tmp_path, monkeypatch, fast_ok, room, max_steps, first_way):
    """The trainer's callback asks the budget with the run's remaining time and hands the decoder to the samples;
    its first compiling batch is announced in the run's events."""
    import torch

    import engine.samples
    from engine.train import callback as cbmod

    monkeypatch.delenv(engine.samples.FAST_DECODE_ENV, raising=False)
    clock, ways = [0.0], []
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: clock[0])

    def timed_batch(model, tokenizer, prompts, max_new_tokens, way=None):
        ways.append(way)
        clock[0] += 1.0
        return [{"prompt": p, "output": "x", "gen_s": 1.0 / len(prompts)} for p in prompts]

    monkeypatch.setattr(engine.samples, "sample_all", timed_batch)
    monkeypatch.setattr(cbmod, "fast_decode_room", lambda model, prompts, new: room)  # the GPU's memory, read there
    cb = cbmod.RunDirCallback(tmp_path, collator=None, steps_per_epoch=10, stop_flag=None, stop_on=[],
                              sample_prompts=["a"], fast_decode_ok=fast_ok)

    class State:
        global_step = 0

    State.max_steps = max_steps
    cb.on_train_begin(None, State, None)
    clock[0] += EVERY * STEP_S
    State.global_step = EVERY
    cb.on_evaluate(None, State, None, model=torch.nn.Module())  # no layers: sampling is stubbed
    assert ways == [first_way]
    events = [r["message"] for r in read_metrics(tmp_path) if r["kind"] == "event"]
    assert any("fast decode" in m for m in events) == (first_way == "compile")


def test_the_skip_event_after_fast_decode_s_compile_says_why(tmp_path, monkeypatch):
    """The evaluations right after the compiling batch go without samples: the event must not call the
    compile the cost of a batch."""
    import torch

    import engine.samples
    from engine.train import callback as cbmod

    monkeypatch.delenv(engine.samples.FAST_DECODE_ENV, raising=False)
    clock = [0.0]
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: clock[0])

    def timed_batch(model, tokenizer, prompts, max_new_tokens, way=None):
        clock[0] += FAST_FIRST_S
        return [{"prompt": p, "output": "x", "gen_s": FAST_FIRST_S} for p in prompts]

    monkeypatch.setattr(engine.samples, "sample_all", timed_batch)
    monkeypatch.setattr(cbmod, "fast_decode_room", lambda model, prompts, new: True)
    cb = cbmod.RunDirCallback(tmp_path, collator=None, steps_per_epoch=10, stop_flag=None, stop_on=[],
                              sample_prompts=["a"], fast_decode_ok=True)

    class State:
        global_step = 0
        max_steps = 20_000

    cb.on_train_begin(None, State, None)
    for k in (1, 2):
        clock[0] += EVERY * STEP_S
        State.global_step = EVERY * k
        cb.on_evaluate(None, State, None, model=torch.nn.Module())  # no layers: sampling is stubbed
    (event,) = [r["message"] for r in read_metrics(tmp_path) if r["kind"] == "event" and "skipped" in r["message"]]
    assert "first batch took 57 s (its compile, once)" in event


def _simulated(batch_s: float, steps: int, every: int, step_s: float) -> float:
    """The trainer's budget over a run whose batches each cost batch_s: the samples' seconds it lets through."""
    from engine.train.sample_budget import SampleBudget

    budget, clock = SampleBudget(), 0.0
    for k in range(every, steps + 1, every):
        clock += every * step_s
        if budget.next_batch(clock, (steps - k) * step_s):
            clock += batch_s
            budget.record(batch_s)
    return budget.spent


@pytest.mark.parametrize("batch_s, steps, every, step_s", [
    (86.0, 54, 10, 0.2),    # a short CPU run: the first batch alone, far over the share
    (0.5, 40, 10, 0.7),     # the demo: every batch, all within the free 10 s
    (20.0, 2000, 50, 0.9),  # a long GPU run: batches within the share
])
def test_expected_spend_counts_what_the_budget_lets_through(batch_s, steps, every, step_s):
    """The estimate's count (expected_spend) is the trainer's rule: the first batch whatever it costs, later ones
    within the share; never less than the trainer spends, and exact when only the first or all batches fit."""
    from engine.train.sample_budget import expected_spend

    spent = _simulated(batch_s, steps, every, step_s)
    counted = expected_spend(steps // every, steps * step_s, batch_s)
    assert counted >= spent - 1e-9
    if spent in (batch_s, steps // every * batch_s):
        assert counted == pytest.approx(spent)
