"""The pre-flight data doctor over small hand-made tokenized datasets."""

from __future__ import annotations

from dataclasses import replace

from engine.config import Config
from engine.data.types import TokenizedExample
from engine.diagnose.cleaning import SlopMatcher, count_slop, duplicate_groups, filter_slop
from engine.diagnose.preflight import blocking, preflight, suggested_max_seq_length


def example(i: int, *, prompt_tokens: int = 20, response_tokens: int = 30, max_len: int = 512,
            prompt: str | None = None, response: str | None = None) -> TokenizedExample:
    full = prompt_tokens + response_tokens
    kept = max(0, min(full, max_len) - prompt_tokens)
    return TokenizedExample(input_ids=[1] * min(full, max_len), labels=[-100] * min(full, max_len),
                            source=f"train.jsonl:{i + 1}", full_length=full, trained_tokens=kept,
                            trained_tokens_full=response_tokens, truncated=full > max_len,
                            prompt_text=prompt if prompt is not None else f"Question number {i}?",
                            response_text=response if response is not None else f"Answer number {i}.")


def dataset(n: int = 200, **kw) -> list[TokenizedExample]:
    return [example(i, **kw) for i in range(n)]


def by_code(findings):
    return {f.code: f for f in findings}


def sized_config() -> Config:
    """The recipe with eval, save and logging steps sized for this small dataset's few steps (else the checklist
    flags them)."""
    cfg = Config()
    cfg.training.eval_steps, cfg.training.save_steps, cfg.training.logging_steps = 2, 5, 1
    return cfg


def test_a_clean_dataset_has_no_findings():
    assert preflight(dataset(), sized_config()) == []


def test_nothing_to_train_on_is_refused():
    findings = preflight(dataset(response_tokens=0), Config())
    assert blocking(findings)
    assert by_code(findings)["no_target_tokens"].severity == "error"
    assert preflight([], Config())[0].code == "no_examples" and blocking(preflight([], Config()))


def test_examples_with_no_or_few_trained_tokens_are_named():
    data = dataset()
    data[3] = example(3, response_tokens=0)
    data[7] = example(7, response_tokens=4)
    f = by_code(preflight(data, Config()))["few_target_tokens"]
    assert f.severity == "warning" and "train.jsonl: line 4" in f.evidence and "train.jsonl: line 8" in f.evidence
    assert not blocking([f])


def test_short_answers_alone_are_not_called_empty():
    """Rows with short but present answers (the bundled demo's) were told to 'remove or fix examples with empty
    responses': none was empty."""
    data = dataset()
    data[7] = example(7, response_tokens=4)
    f = by_code(preflight(data, Config()))["few_target_tokens"]
    assert f.severity == "info" and "empty" not in (f.message + f.fix).lower()
    assert "train.jsonl: line 8" in f.evidence
    data[3] = example(3, response_tokens=0)
    assert "empty responses" in by_code(preflight(data, Config()))["few_target_tokens"].fix


def test_truncated_responses_are_counted_with_the_length_that_keeps_95_percent():
    data = [example(i, response_tokens=30 + 10 * i, max_len=512) for i in range(100)]  # full 50..1040
    f = by_code(preflight(data, Config()))["responses_truncated"]
    cut = sum(1 for e in data if e.trained_tokens < e.trained_tokens_full)
    assert f.evidence.startswith(f"{cut} of 100")
    assert "max_seq_length to 1024" in f.fix  # 95th of the lengths is 990, rounded up to a multiple of 64
    assert suggested_max_seq_length(data, too_long_lengths=[]) == 1024
    assert f.severity == "warning"


def test_advice_for_a_single_huge_example_stays_within_the_allowed_range():
    # A 50 MB single-line JSONL: one example of ~10 M tokens once advised max_seq_length 10000064, which the
    # validator refuses (and `inspect-data --fix` would have written into the config).
    from engine.config import FIELDS, check_override
    from engine.config_edit import fix_setting

    data = [example(0, prompt_tokens=10, response_tokens=10_000_000, max_len=512)]
    f = by_code(preflight(data, Config()))["responses_truncated"]
    assert fix_setting(f.fix) is None and "max_seq_length to" not in f.fix
    assert f"more than the largest max_seq_length allowed ({int(FIELDS['training.max_seq_length'].hi):,})" in f.fix
    # At the largest allowed value the advice is a setting again, one the validator takes.
    near = [example(0, prompt_tokens=10, response_tokens=1_048_560, max_len=512)]  # rounds up to the largest
    key, value = fix_setting(by_code(preflight(near, Config()))["responses_truncated"].fix)
    assert (key, check_override(key, value, flag="--fix")) == ("training.max_seq_length", 1_048_576)


def test_prompts_longer_than_max_seq_length():
    data = dataset()
    data[0] = example(0, prompt_tokens=700, response_tokens=30)
    assert by_code(preflight(data, Config()))["prompt_too_long"].evidence.startswith("1 of 200")


def test_too_few_examples():
    f = by_code(preflight(dataset(40), Config()))["too_few_examples"]
    assert f.severity == "warning" and "100" in f.message


def test_duplicates_after_whitespace_normalisation():
    data = dataset()
    data[10] = example(10, prompt="Question  number 1?", response="Answer number 1.\n")
    data[11] = example(11, prompt="Question number 1?", response=" Answer   number 1.")
    # As a user's own file names its rows: the full path, which the evidence names as every finding does.
    for i in (1, 10, 11):
        data[i] = replace(data[i], source=f"/root/nc data/train.jsonl:{i + 1}")
    f = by_code(preflight(data, Config()))["duplicate_examples"]
    assert f.evidence == "2 extra copies in 1 group, e.g. train.jsonl: lines 2, 11, 12 are the same"


def test_rows_without_lines_are_named_by_their_row():
    """A Parquet file's rows and a hub dataset's have no lines: "tiny_set: lines  row 1,  row 2" read as garbled."""
    data = dataset()
    for i, name in ((3, "someone/tiny_set"), (4, "someone/tiny_set"), (7, "/data/train.parquet")):
        data[i] = replace(data[i], source=f"{name}: row {i + 1}", prompt_text="Same?", response_text="Same.")
    f = by_code(preflight(data, Config()))["duplicate_examples"]
    assert f.evidence == "2 extra copies in 1 group, e.g. tiny_set: row 4, tiny_set: row 5, train.parquet: row 8 are the same"
    data[7] = replace(data[7], source="someone/tiny_set: row 8")
    f = by_code(preflight(data, Config()))["duplicate_examples"]
    assert f.evidence == "2 extra copies in 1 group, e.g. tiny_set: rows 4, 5, 8 are the same"


def test_slop_phrases_are_counted_per_phrase():
    data = dataset()
    data[0] = example(0, response="As an AI language model, I cannot do that.")
    data[1] = example(1, response="As an  AI language model I think so.")
    data[2] = example(2, response="I’m sorry, but I cannot fulfill this request.")
    f = by_code(preflight(data, Config()))["slop_phrases"]
    assert f.evidence.startswith("3 of 200")
    assert '"as an ai language model" x2' in f.evidence


def test_slop_matcher_matches_whole_words_only():
    matcher = SlopMatcher(["as an ai", "trained by openai"])
    assert matcher.find("As an aid to memory") == []
    assert matcher.find("as an AI, trained by\nOpenAI") == ["as an ai", "trained by openai"]
    assert count_slop(["as an ai", "hello", "AS AN AI"], matcher) == (2, {"as an ai": 2})
    kept, dropped = filter_slop(["fine", "As an AI I refuse"], matcher=matcher)
    assert kept == ["fine"] and dropped == [("As an AI I refuse", ["as an ai"])]


def test_the_shipped_phrase_list_loads():
    matcher = SlopMatcher()
    assert len(matcher.phrases) > 20
    assert matcher.find("Sure! As a large language model trained by OpenAI, I ...")
    assert duplicate_groups(["a b", "a  b", "c"]) == [[0, 1]]


def test_bf16_on_a_gpu_without_it_is_refused():
    cfg = sized_config()
    cfg.training.precision = "bf16"
    assert blocking(preflight(dataset(), cfg, gpu_bf16=False))
    assert preflight(dataset(), cfg, gpu_bf16=True) == []
    cfg.training.precision = "auto"
    assert preflight(dataset(), cfg, gpu_bf16=False) == []


def test_estimated_memory_over_90_percent():
    f = by_code(preflight(dataset(), Config(), est_peak_gib=15.0, gpu_total_gib=16.0))["memory_estimate_high"]
    assert f.severity == "warning" and "94%" in f.evidence
    over = preflight(dataset(), Config(), est_peak_gib=17.0, gpu_total_gib=16.0)
    assert blocking(over)
    assert preflight(dataset(), sized_config(), est_peak_gib=12.0, gpu_total_gib=16.0) == []


def test_errors_come_first():
    cfg = sized_config()
    cfg.training.precision = "bf16"
    findings = preflight(dataset(40, response_tokens=0), cfg, gpu_bf16=False)
    ranks = [f.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)


def test_rows_the_data_layer_dropped_are_reported():
    findings = by_code(preflight(dataset(), Config(), dropped={"empty response": 3, "too long": 2}))
    assert "3 rows dropped with nothing to train (empty response x3)" in findings["few_target_tokens"].evidence
    assert findings["few_target_tokens"].severity == "warning"
    assert "2 rows dropped as too long" in findings["prompt_too_long"].evidence


def test_every_row_dropped_is_refused_as_nothing_to_train():
    findings = preflight([], Config(), dropped={"empty response": 5})
    assert [f.code for f in findings] == ["no_target_tokens"] and blocking(findings)
    assert "0 of 5 rows left" in findings[0].evidence


def test_the_memory_line_and_the_fit_verdict_compare_the_same_need():
    # A 70B sharded over four 40 GB cards trains under 90 % of each, but every rank loads the whole 4-bit model
    # first: the estimate says it does not fit, and so must the checklist (it compared training's peak alone).
    from engine.data.types import DataReport
    from engine.estimate import get_gpu, read_model_config
    from tui.models.wizard_engine_calls import estimate_and_check

    cfg = sized_config()
    cfg.model, cfg.training.max_seq_length, cfg.training.num_gpus = "llama-2-70b", 512, 4
    cfg.training.parallelism = "fsdp"
    examples = dataset()
    est, findings, pf_error, est_error = estimate_and_check(
        cfg, read_model_config(cfg.model), get_gpu("a100-40"), len(examples), None,
        DataReport(path="x.jsonl", format="alpaca", n_train=len(examples)), examples, False)
    assert est is not None and findings is not None and pf_error is est_error is None
    assert est.device_total_gib < 0.9 * 40 < est.need_gib and est.fits is False
    f = by_code(findings)["memory_estimate_high"]
    assert f.evidence.startswith(f"estimated peak {est.need_gib:.1f} GiB of 40.0 GiB"), f.evidence


def test_the_duplicates_fix_names_prepare_only_for_files_prepare_reads(tmp_path):
    """`lorapilot prepare` refuses a training JSONL ('unknown kind of file'): the fix sent a user with a chat JSONL
    there. It names prepare for a CSV, which prepare de-duplicates, and the lines themselves otherwise."""
    from conftest import run_cli

    def fix_for(source: str) -> str:
        data = dataset()
        data[11] = example(11, prompt="Question number 1?", response="Answer number 1.")
        for i in (1, 11):
            data[i].source = f"{source}:{i + 1}"
        return by_code(preflight(data, Config()))["duplicate_examples"].fix

    (tmp_path / "chat.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    refused = run_cli("prepare", str(tmp_path / "chat.jsonl"), "--out", str(tmp_path / "out.jsonl"))
    assert refused.returncode == 2 and "unknown kind of file" in refused.stderr
    assert "prepare" not in fix_for(str(tmp_path / "chat.jsonl")) and "Keep one of each" in fix_for("chat.jsonl")
    assert "`lorapilot prepare` de-duplicates" in fix_for("rows.csv")
