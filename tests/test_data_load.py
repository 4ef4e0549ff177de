"""load_examples and inspect_dataset: validation split, refusals, report counts, previews."""

from __future__ import annotations

import json

import pytest

from engine.config import Config
from engine.data import IGNORE_INDEX, inspect_dataset, load_examples, preview_segments, split_indices
from engine.demo.model import build_tokenizer, demo_data_path
from engine.errors import DataError


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(demo_data_path())


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n, start=0):
    return [{"instruction": f"What is {i} plus 1?", "input": "", "output": f"{i + 1}."} for i in range(start, start + n)]


def config(path, **dataset):
    cfg = Config()
    cfg.dataset.path = str(path)
    for key, value in dataset.items():
        setattr(cfg.dataset, key, value)
    return cfg


@pytest.mark.parametrize("n,fraction,n_val", [(100, 0.05, 5), (100, 0.1, 10), (10, 0.05, 1), (3, 0.5, 2),
                                              (2, 0.9, 1), (1, 0.5, 0), (50, 0.0, 0)])
def test_split_sizes(n, fraction, n_val):
    train, val = split_indices(n, fraction, seed=42)
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(train + val) == list(range(n)) and train == sorted(train) and val == sorted(val)


def test_split_is_seeded():
    assert split_indices(200, 0.1, 1) == split_indices(200, 0.1, 1)
    assert split_indices(200, 0.1, 1) != split_indices(200, 0.1, 2)


def test_load_examples_splits_deterministically(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", rows(40))
    cfg = config(path, validation_split=0.1)
    first, again = load_examples(cfg, tok), load_examples(cfg, tok)
    assert (len(first.train), len(first.validation)) == (36, 4)
    assert [e.source for e in first.validation] == [e.source for e in again.validation]
    assert not {e.source for e in first.train} & {e.source for e in first.validation}
    cfg.training.seed = 7
    assert [e.source for e in load_examples(cfg, tok).validation] != [e.source for e in first.validation]
    r = first.report
    assert (r.n_rows, r.n_train, r.n_validation, r.format, r.template) == (40, 36, 4, "alpaca", "chat template")
    assert r.trained_tokens == sum(e.trained_tokens for e in first.train)
    assert r.total_tokens == sum(len(e) for e in first.train)


def test_no_validation(tmp_path, tok):
    data = load_examples(config(write_jsonl(tmp_path / "d.jsonl", rows(10)), validation_split=0.0), tok)
    assert len(data.train) == 10 and data.validation == []


def test_validation_path(tmp_path, tok):
    train = write_jsonl(tmp_path / "train.jsonl", rows(8))
    val = write_jsonl(tmp_path / "val.jsonl", rows(3, start=100))
    data = load_examples(config(train, validation_path=str(val), validation_split=0.5), tok)
    assert len(data.train) == 8 and [e.source for e in data.validation] == [f"{val}:{i}" for i in (1, 2, 3)]


def test_max_examples_before_the_split(tmp_path, tok):
    data = load_examples(config(write_jsonl(tmp_path / "d.jsonl", rows(50)), max_examples=20,
                                validation_split=0.1), tok)
    assert data.report.n_rows == 20 and len(data.train) + len(data.validation) == 20
    assert all(int(e.source.rsplit(":", 1)[1]) <= 20 for e in data.train + data.validation)


def test_train_on_all(tmp_path, tok):
    data = load_examples(config(write_jsonl(tmp_path / "d.jsonl", rows(4)), train_on="all",
                                validation_split=0.0), tok)
    for e in data.train:
        assert e.labels[0] == IGNORE_INDEX and e.labels[1:] == e.input_ids[1:]


def test_empty_responses_are_dropped_and_counted(tmp_path, tok):
    data = rows(5) + [{"instruction": "Q", "input": "", "output": ""}] * 2
    prepared = load_examples(config(write_jsonl(tmp_path / "d.jsonl", data), validation_split=0.0), tok)
    assert len(prepared.train) == 5 and prepared.report.dropped == {"empty response": 2}


def test_all_responses_empty_is_refused_naming_the_file(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Q", "input": "", "output": ""}] * 3)
    with pytest.raises(DataError, match=rf"^{path}: nothing to train: .*\(3 rows; dropped: 3 empty response\)"):
        load_examples(config(path), tok)


def test_everything_too_long_is_refused(tmp_path, tok):
    long = [{"instruction": " ".join(["lemon"] * 80), "input": "", "output": " ".join(["yellow"] * 80)}] * 2
    cfg = config(write_jsonl(tmp_path / "d.jsonl", long), validation_split=0.0)
    cfg.training.max_seq_length = 32
    with pytest.raises(DataError, match=r"nothing to train.*2 too long") as e:
        load_examples(cfg, tok)
    assert "max_seq_length" in str(e.value)


def test_broken_line_surfaces_from_load_examples(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(rows(1)[0]) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:2: invalid JSON"):
        load_examples(config(path), tok)


def test_inspect_dataset_with_a_tokenizer(tmp_path, tok):
    report, examples = inspect_dataset(write_jsonl(tmp_path / "d.jsonl", rows(6)), tokenizer=tok, max_seq_length=64)
    assert report.n_train == 6 and report.n_validation == 0 and len(examples) == 6
    runs = preview_segments(examples[0])  # stored: the wizard has no tokenizer at hand
    assert runs == preview_segments(examples[0], tok)
    assert [t for t, trained in runs if trained] == ["1.<|im_end|>"]


def test_inspect_dataset_with_the_demo_model(demo_model_dir):
    report, examples = inspect_dataset(demo_data_path(), max_seq_length=128)
    assert report.format == "alpaca" and report.n_rows == len(examples) > 0 and not report.dropped
    assert all(e.input_ids.count(1) == 1 and e.trained_tokens > 0 for e in examples)


def test_preview_needs_a_tokenizer_when_nothing_is_stored(tmp_path, tok):
    data = load_examples(config(write_jsonl(tmp_path / "d.jsonl", rows(2)), validation_split=0.0), tok)
    with pytest.raises(ValueError, match="pass the tokenizer"):
        preview_segments(data.train[0])


# ---------------------------------------------------------------- the preview is the trainer's preparation

@pytest.mark.parametrize("train_on", ["completions", "all"])
def test_the_preview_shows_what_the_trainer_trains_on(tmp_path, tok, train_on):
    """The wizard's preview and inspect-data run load_examples' own preparation: train_on, the validation split,
    max_examples and truncation reach it."""
    from engine.data import inspect_config

    long_row = {"instruction": " ".join(["lemon"] * 60), "input": "", "output": "Red."}
    cfg = config(write_jsonl(tmp_path / "d.jsonl", rows(30) + [long_row]), validation_split=0.2, max_examples=31,
                 train_on=train_on)
    cfg.training.max_seq_length = 40
    report, shown = inspect_config(cfg, tokenizer=tok)
    trained = load_examples(cfg, tok)
    assert [(e.source, e.input_ids, e.labels) for e in shown] == \
        [(e.source, e.input_ids, e.labels) for e in trained.train]
    assert (report.n_train, report.n_validation) == (trained.report.n_train, trained.report.n_validation) == (25, 6)
    assert report.n_prompt_shortened == trained.report.n_prompt_shortened
    first = shown[0]
    masked = sum(label == IGNORE_INDEX for label in first.labels)
    if train_on == "all":  # every token but the first (nothing predicts it)
        assert masked == 1 and first.segments[0] == (tok.decode(first.input_ids[:1]), False)
    else:  # the prompt masked, the answer trained from the seam on
        assert all(label == IGNORE_INDEX for label in first.labels[:first.prompt_len])
        assert first.labels[first.prompt_len] != IGNORE_INDEX
        assert first.segments[0] == (tok.decode(first.input_ids[:first.prompt_len]), False)


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl"])
def test_the_preview_shows_numbers_as_the_file_writes_them(tmp_path, tok, name):
    """A CSV column of numbers (pandas typed it) and JSON numbers (Python's float of them) reached the template as
    "501.0", "3.1", "100000.0": the preview showed, and the trainer trained, text the file does not hold. A TSV file
    (refused before) is read by the same rules, split on its tabs, in the preview as in training."""
    from engine.data import inspect_config

    answers = ["00501", "3.10", "1e5"]
    path = tmp_path / name
    if name.endswith((".csv", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        path.write_text(f"instruction{sep}output\n" + "".join(f"What is it?{sep}{a}\n" for a in answers),
                        encoding="utf-8")
    else:  # a zip code is a JSON string (no JSON number has a leading zero); the others numbers
        path.write_text("".join(f'{{"instruction": "What is it?", "output": {a}}}\n'
                                for a in ('"00501"', "3.10", "1e5")), encoding="utf-8")
    cfg = config(path, validation_split=0.0)
    _, shown = inspect_config(cfg, tokenizer=tok)
    trained = load_examples(cfg, tok).train
    assert [e.input_ids for e in shown] == [e.input_ids for e in trained]
    texts = ["".join(text for text, is_trained in e.segments if is_trained) for e in shown]
    assert texts == [f"{a}<|im_end|>" for a in answers], texts  # the demo model's end-of-turn token after each


def test_inspect_data_with_a_config_shows_what_it_trains_on(tmp_path, demo_model_dir, capsys):
    import argparse

    from engine.diagnose import command

    data = write_jsonl(tmp_path / "d.jsonl", rows(20))
    (tmp_path / "run.yaml").write_text(f"model: {demo_model_dir}\ndataset:\n  path: {data}\n  train_on: all\n"
                                       "  validation_split: 0.25\n  max_examples: 16\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    command.add_inspect_arguments(parser)
    assert command.run_inspect(parser.parse_args([str(data), "--config", str(tmp_path / "run.yaml"), "--json"])) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert (report["n_rows"], report["n_train"], report["n_validation"]) == (16, 12, 4)
    assert report["trained_tokens"] == report["total_tokens"] - 12  # all: every token but each row's first


def test_the_length_advice_counts_the_rows_a_short_max_seq_length_drops(tmp_path, tok):
    """The length that keeps 95 % of examples whole was computed from the rows left after the too-long ones were
    dropped: too low exactly when max_seq_length is too short. It must cover 95 % of ALL rows, as the data layer
    tokenizes them: the wizard's hint (inspect_config) and the pre-flight's truncation fix alike."""
    import math

    from engine.data import inspect_config, prepare_examples
    from engine.diagnose.preflight import preflight, suggested_max_seq_length

    short = [{"instruction": f"What is {i} plus 1?", "input": "", "output": " ".join(["yellow"] * (5 + i))}
             for i in range(60)]  # cut, not dropped, at max_seq_length 32
    long = [{"instruction": " ".join(["lemon"] * (60 + i)), "input": "", "output": " ".join(["yellow"] * 60)}
            for i in range(40)]  # dropped as too long at 32
    cfg = config(write_jsonl(tmp_path / "d.jsonl", short + long), validation_split=0.0)
    whole = prepare_examples(cfg, tok).train  # at 512 nothing is dropped: every row's length
    assert len(whole) == 100 and not any(e.truncated for e in whole)
    lengths = sorted(e.full_length for e in whole)

    cfg.training.max_seq_length = 32
    data = prepare_examples(cfg, tok)
    assert data.report.dropped == {"too long": 40}
    assert sorted(data.report.too_long_lengths) == sorted(e.full_length for e in whole[60:])
    n = suggested_max_seq_length(data.train, too_long_lengths=data.report.too_long_lengths)
    assert sum(length <= n for length in lengths) >= math.ceil(0.95 * len(lengths)), (n, lengths)
    assert n == suggested_max_seq_length(whole, too_long_lengths=[])

    # The pre-flight's fix and the wizard's source (inspect_config) say the same number.
    fix = next(f.fix for f in preflight(data.train, cfg, dropped=data.report.dropped,
                                        too_long_lengths=data.report.too_long_lengths)
               if f.code == "responses_truncated")
    assert f"Set training.max_seq_length to {n} " in fix, fix
    report, examples = inspect_config(cfg, tokenizer=tok)
    assert suggested_max_seq_length(examples, too_long_lengths=report.too_long_lengths) == n


def test_train_log_counts_what_inspect_data_counts(tmp_path, tok, capsys, demo_model_dir):
    """The trainer's data line in train.log says how many prompts were shortened, in inspect-data's words, and
    the empty assistant turns reach it with their count (the note the wizard and inspect-data show)."""
    from engine.train import run

    chat = [{"messages": [{"role": "user", "content": "Hi " * 30}, {"role": "assistant", "content": ""},
                          {"role": "user", "content": "And?"}, {"role": "assistant", "content": "Red."}]}] + \
        [{"messages": [{"role": "user", "content": f"What is {i}?"}, {"role": "assistant", "content": f"{i}."}]}
         for i in range(5)]
    cfg = config(write_jsonl(tmp_path / "d.jsonl", chat), validation_split=0.0)
    cfg.training.max_seq_length = 30
    data = load_examples(cfg, tok)
    assert (data.report.n_prompt_shortened, data.report.n_empty_turns) == (1, 1)
    capsys.readouterr()
    cfg.model = str(demo_model_dir)   # the trainer's load reads the model's config.json first (a multimodal one refused)
    run.load(cfg, tmp_path, resume=True, data=data, tokenizer=tok)  # resume: no pre-flight, only the log
    logged = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[lorapilot] data: ")]
    assert "0 rows lost response tokens, 1 had their prompt shortened" in logged[0]
    assert any(line.endswith("(kept as context): 1; trained, an empty answer would teach the model to answer "
                             "nothing") for line in logged[1:])


def test_the_wizard_words_the_cuts_as_train_log_and_inspect_data_do():
    """The dataset screen's row for what max_seq_length cuts had its own wording ("examples lose response tokens;
    prompts shortened"): it is DataReport.cuts, the one train.log and inspect-data print."""
    from engine.data.types import DataReport
    from tui.widgets.data_stats import DataStats

    report = DataReport(path="d.jsonl", format="chat", n_rows=3000, n_train=3000, n_truncated=1200,
                        n_prompt_shortened=2)
    stats = DataStats()
    stats.show(report, 512)
    assert report.cuts() == "1,200 rows lost response tokens, 2 had their prompt shortened"
    assert f"> 512 tok      {report.cuts()}" in str(stats.content).splitlines()


@pytest.mark.parametrize(("truncated", "shortened", "warned"), [(0, 0, False), (3, 0, True), (0, 2, True)])
def test_the_wizard_warns_of_any_cut(truncated, shortened, warned):
    """The dataset screen's cut row was a warning only when response tokens were lost: prompts shortened alone
    (context the model was meant to see, gone) looked as harmless as no cut at all."""
    from engine.data.types import DataReport
    from tui.widgets.data_stats import DataStats

    report = DataReport(path="d.jsonl", format="chat", n_rows=30, n_train=30, n_truncated=truncated,
                        n_prompt_shortened=shortened)
    stats = DataStats()
    stats.show(report, 512)
    content = stats.content
    start = str(content).index(report.cuts())
    styles = {span.style for span in content.spans if span.start <= start < span.end}
    assert ("$text-warning" in styles) is warned, styles
