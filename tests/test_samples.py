"""Generated samples during training and the base-vs-adapter playground, on a real demo run."""

from __future__ import annotations

import pytest

from conftest import run_cli, unwrapped
from engine.rundir import read_metrics

# The tests reading the finished demo run are `slow` (conftest); the others here train nothing.


def test_samples_at_every_evaluation_and_they_change(finished_demo_run):
    records = read_metrics(finished_demo_run)
    eval_steps = [r["step"] for r in records if r["kind"] == "eval"]
    samples = [r for r in records if r["kind"] == "sample"]
    sampled = sorted({s["step"] for s in samples})
    skipped = [r["step"] for r in records if r["kind"] == "event" and r.get("code") == "samples_skipped"]
    if skipped:
        # A loaded machine made sampling cost more than its share of the run (engine/train/sample_budget.py):
        # every evaluation before the first skip still sampled, and the skip was said.
        assert sampled == [s for s in eval_steps if s < skipped[0]] + [s for s in sampled if s > skipped[0]]
        assert sampled[0] == eval_steps[0] and set(sampled) <= set(eval_steps)
    else:
        assert sampled == eval_steps
    assert all(s["output"] and s["prompt"] and s["gen_s"] >= 0 and "eval_loss" in s for s in samples)
    # the held-out question as the data has it, not the chat template around it
    assert not any("<|im_start|>" in s["prompt"] or "<s>" in s["prompt"] for s in samples)
    assert all(s["reference"] for s in samples)  # the held-out answers, beside what the model said
    per_step = {}
    for s in samples:
        per_step.setdefault(s["step"], []).append(s["output"])
    assert all(len(v) == 3 for v in per_step.values())  # 3 held-out prompts by default
    first, last = per_step[sampled[0]], per_step[sampled[-1]]
    if len(sampled) > 1:   # one sampled evaluation only where the budget skipped the rest (said above)
        assert first != last  # the model's answers moved as it trained
    else:
        assert skipped and len(eval_steps) > 1


def test_playground_base_and_adapter_differ(finished_demo_run):
    from engine.playground import Playground

    pg = Playground(finished_demo_run)
    prompt = "What is the opposite of hot?"
    base = pg.answer(prompt, adapter=False, max_new_tokens=16)
    tuned = pg.answer(prompt, adapter=True, max_new_tokens=16)
    assert base and tuned and base != tuned
    assert pg.answer(prompt, adapter=False, max_new_tokens=16) == base  # the toggle leaves the base untouched
    pieces = list(pg.stream(prompt, adapter=True, max_new_tokens=16))
    assert len(pieces) > 1 and "".join(pieces).strip() == tuned  # streamed token by token


def test_chat_escapes_control_characters_the_model_generates_and_keeps_them_raw(finished_demo_run, monkeypatch,
                                                                                capsys):
    """A model can generate any byte: the demo's byte tokens decode to ESC and the other C0 controls, which `chat`
    (and the playground) would write to the terminal. What reaches the terminal is escaped; what the stream yields
    (and a conversation's history feeds back) is what the model wrote. The model's choice of tokens is forced here
    (ESC, then text); the tokenizer, the streamer and the chat verb are the real ones."""
    import torch

    import engine.samples
    from engine.cli import main
    from engine.playground import Playground

    pg = Playground(finished_demo_run)
    esc = next(i for i in range(len(pg.tokenizer)) if pg.tokenizer.decode([i]) == "\x1b")
    text = pg.tokenizer("[31m red", add_special_tokens=False)["input_ids"]

    def generate(model, tokenizer, ids, *, streamer, **kw):
        streamer.put(torch.as_tensor(ids).reshape(1, -1))   # the prompt: skipped
        streamer.put(torch.tensor([esc, *text]))
        streamer.end()
    monkeypatch.setattr(engine.samples, "generate", generate)
    assert "".join(pg.stream("hi", adapter=True)).startswith("\x1b[31m")   # raw: fed back as written
    capsys.readouterr()
    assert main(["chat", str(finished_demo_run), "--prompt", "hi", "--adapter-only"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31m" in out and "red" in out, out


def test_the_playground_feeds_the_held_out_rows_training_prefix_ids(finished_demo_run):
    """What the playground and chat feed for a held-out row's question, with the tokenizer, chat template and
    prompt style saved in adapter/, is the ids that row was trained with before its answer (no model load)."""
    from engine.config import load_config
    from engine.data import load_examples
    from engine.export import adapter_dir
    from engine.model import load_tokenizer
    from engine.playground import prompt_style
    from engine.samples import choose_prompts, from_text

    cfg = load_config(finished_demo_run / "config.yaml")
    held_out = load_examples(cfg, load_tokenizer(cfg.model)).validation
    adapter = adapter_dir(finished_demo_run)
    tok, style = load_tokenizer(str(adapter)), prompt_style(adapter, cfg)
    assert (adapter / "chat_template.jinja").exists() and (style.format, style.system) == ("alpaca", "")
    assert held_out and all(from_text(tok, ex.question, style).ids == ex.input_ids[:ex.prompt_len]
                            for ex in held_out)
    # A checkpoint of a run still training (what p in the monitor chats with) holds neither the tokenizer nor
    # the style: they are rebuilt from the run's model and data, and feed the same ids.
    from engine.playground import newest_checkpoint, prompt_tools

    ckpt_tok, ckpt_style = prompt_tools(newest_checkpoint(finished_demo_run), cfg)
    assert all(from_text(ckpt_tok, ex.question, ckpt_style).ids == ex.input_ids[:ex.prompt_len] for ex in held_out)
    # the samples' questions and expected answers are those rows' own
    samples = [r for r in read_metrics(finished_demo_run) if r["kind"] == "sample"][:3]
    assert [(s["prompt"], s["reference"]) for s in samples] == \
        [(p.text, p.reference) for p in choose_prompts(cfg, tok, held_out)]


def test_chat_cli_answers_both(finished_demo_run):
    r = run_cli("chat", str(finished_demo_run), "--prompt", "What is 3 plus 4?", "--max-new-tokens", "12")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert lines[0].startswith("[base] ") and lines[1].startswith("[adapter] ")
    assert lines[0][len("[base] "):] != lines[1][len("[adapter] "):]


def test_chat_cli_prints_no_loading_progress_bar(finished_demo_run):
    """`lorapilot chat --prompt` in a script or tmux: transformers' "Loading weights 0%...100%" bar is noise there
    (carriage returns in a captured log); our own line says what is loading. Warnings stay on: only bars go."""
    r = run_cli("chat", str(finished_demo_run), "--prompt", "What is 3 plus 4?", "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr
    assert "loading the base model and the adapter" in unwrapped(r.stderr)
    assert "Loading weights" not in unwrapped(r.stderr) and "%|" not in unwrapped(r.stderr) and "\r" not in unwrapped(r.stderr), r.stderr[:500]


def test_chat_cli_quiets_bars_not_warnings(monkeypatch):
    """The switch chat uses turns off progress bars only: transformers' log level (its warnings) is untouched."""
    from transformers.utils import logging as hf_logging

    from engine.model import quiet_progress_bars

    level = hf_logging.get_verbosity()
    monkeypatch.setattr(hf_logging, "_tqdm_active", True)
    quiet_progress_bars()
    assert not hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == level


def test_chat_bad_settings_exit_2(finished_demo_run):
    r = run_cli("chat", str(finished_demo_run), "--prompt", "x", "--top-p", "0")
    assert r.returncode == 2 and "--top-p" in unwrapped(r.stderr) and "Traceback" not in unwrapped(r.stderr)


@pytest.mark.parametrize("batch_s, every_s", [(18.0, 43.5), (0.3, 2.2)])
def test_samples_keep_within_their_share_of_the_run_time(tmp_path, monkeypatch, batch_s, every_s):
    """The scheduling alone, on a clock: an H100 7B (18 s a batch every 43.5 s of training) and the demo."""
    import torch

    import engine.samples
    from engine.train import callback as cbmod
    from engine.train import sample_budget as sb

    clock = [0.0]
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: clock[0])

    def timed_batch(model, tokenizer, prompts, max_new_tokens, way=None):
        clock[0] += batch_s
        return [{"prompt": p, "output": "x", "gen_s": batch_s / len(prompts)} for p in prompts]

    monkeypatch.setattr(engine.samples, "sample_all", timed_batch)
    cb = cbmod.RunDirCallback(tmp_path, collator=None, steps_per_epoch=10, stop_flag=None, stop_on=[],
                              sample_prompts=["a", "b", "c"])

    class State:
        global_step = 0
        max_steps = 1000

    cb.on_train_begin(None, State, None)
    sampled = []
    for k in range(1, 21):
        clock[0] += every_s
        State.global_step = 50 * k
        before = cb._samples.spent
        cb.on_evaluate(None, State, None, model=torch.nn.Module())  # no layers: sampling is stubbed
        if cb._samples.spent > before:
            sampled.append(k)
            if k > 1:  # after the first batch, the total stays within the budget
                assert cb._samples.spent <= max(sb.SAMPLE_TIME_SHARE * clock[0], sb.SAMPLE_FREE_S) + 1e-9
    records = read_metrics(tmp_path)
    if batch_s * 20 > max(sb.SAMPLE_FREE_S, sb.SAMPLE_TIME_SHARE * 20 * every_s):
        assert sampled[0] == 1 and 2 <= len(sampled) < 20
        assert sum(r["kind"] == "event" and "samples skipped" in r["message"] for r in records) == 1
    else:  # cheap samples: every evaluation has them
        assert sampled == list(range(1, 21)) and not any(r["kind"] == "event" for r in records)
    assert sum(r["kind"] == "sample" for r in records) == 3 * len(sampled)


def test_4bit_model_answers_in_eval_mode_on_a_cpu_with_avx512_bf16(demo_model_dir, monkeypatch):
    """Samples and the playground run the 4-bit model in eval mode without grad. On CPUs with AVX512-BF16,
    bitsandbytes then repacks each weight for its CPU inference kernel, which raised on the demo's 352-wide MLP (before
    v4) and killed the demo run at its first evaluation, and changes the layout of weights training goes on using. Pretending the CPU has the feature makes this check
    the same on every machine: the loader must keep the layout, and eval mode answer as train mode does."""
    import bitsandbytes.nn.modules as bnb_modules
    import torch

    from engine.model import load_base_model

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    model, _ = load_base_model(str(demo_model_dir), "nf4", "auto")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        trained_way = model.train()(input_ids=ids).logits
        sampled_way = model.eval()(input_ids=ids).logits
    assert torch.equal(sampled_way, trained_way)


def test_bitsandbytes_cpu_kernel_hub_warning_is_kept_out_of_train_log():
    """bitsandbytes logs a 'pip install kernels' warning at import on AVX512-BF16 CPUs (no hub here); the engine
    raises that logger's level. Checked on bitsandbytes' own logger object, so a renamed module fails here."""
    import logging

    import bitsandbytes.backends.cpu.ops as cpu_ops

    import engine  # noqa: F401

    assert cpu_ops.logger.getEffectiveLevel() >= logging.ERROR


def _cut_mid_character(tokenizer) -> tuple[list[int], list[int]]:
    """(ids of 'The word is ’q', the same cut inside the ’): the demo's byte-level BPE spends bytes on ’."""
    ids = tokenizer.encode("The word is ’q", add_special_tokens=False)
    cut = next(i for i in range(len(ids), 0, -1) if tokenizer.decode(ids[:i]).endswith("\ufffd"))
    return ids, ids[:cut]


def test_a_cut_inside_a_character_shows_no_replacement_character(demo_tokenizer):
    """'The word is�': max_new_tokens cut a character's bytes; the partial one is dropped, a real U+FFFD kept."""
    from engine.samples import decode_generated

    ids, cut = _cut_mid_character(demo_tokenizer)
    assert decode_generated(demo_tokenizer, ids) == "The word is ’q"
    assert decode_generated(demo_tokenizer, cut) == "The word is"
    genuine = demo_tokenizer.encode("a \ufffd b", add_special_tokens=False)
    assert decode_generated(demo_tokenizer, genuine + cut) == "a \ufffd bThe word is"


def test_samples_generate_and_the_playground_stream_drop_a_cut_character(demo_tokenizer):
    import torch

    from engine.playground import _answer_streamer
    from engine.samples import generate

    _, cut = _cut_mid_character(demo_tokenizer)
    prompt = demo_tokenizer.encode("Say:", add_special_tokens=False)

    class CutModel:   # generate() as transformers': the prompt, then the new tokens, fed to a streamer if given
        def parameters(self):
            yield torch.zeros(1)

        def generate(self, input_ids, streamer=None, **kw):
            if streamer is not None:
                streamer.put(input_ids[0])
                for t in cut:
                    streamer.put(torch.tensor([t]))
                streamer.end()
            return torch.cat([input_ids, torch.tensor([cut])], dim=1)

    assert generate(CutModel(), demo_tokenizer, prompt, max_new_tokens=len(cut)) == "The word is"
    streamer = _answer_streamer(demo_tokenizer)   # the playground's and `lorapilot chat`'s stream
    generate(CutModel(), demo_tokenizer, prompt, max_new_tokens=len(cut), streamer=streamer)
    assert "".join(streamer) == "The word is "   # the stream is not stripped; Playground.answer strips it


def test_the_held_out_prompts_sampled_are_distinct(demo_tokenizer, tmp_path):
    """A held-out split drawn from data with repeated questions held the same one twice (seen on a 300-row chat
    set: 'What is the capital of Germany?' sampled twice at every evaluation); greedy decoding answers a repeated
    prompt identically, so the slot showed nothing new. The first distinct prompts are sampled."""
    import json

    from engine.config import Config, DatasetConfig
    from engine.data import load_examples
    from engine.samples import DEFAULT_SAMPLE_PROMPTS, choose_prompts

    rows = [{"instruction": q, "output": f"answer {i}"} for i, q in enumerate(["say 1", "say 1", "say 2", "say 3"])]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4), encoding="utf-8")
    cfg = Config(model="lorapilot-demo", dataset=DatasetConfig(path=str(tmp_path / "train.jsonl"),
                                                               validation_path=str(tmp_path / "val.jsonl")))
    held_out = load_examples(cfg, demo_tokenizer).validation
    chosen = choose_prompts(cfg, demo_tokenizer, held_out)
    assert len(chosen) == DEFAULT_SAMPLE_PROMPTS
    assert [p.text for p in chosen] == ["say 1", "say 2", "say 3"]
    assert [p.reference for p in chosen] == ["answer 0", "answer 2", "answer 3"]
