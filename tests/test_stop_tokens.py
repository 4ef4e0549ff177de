"""Generation stops where training stopped: every end token the trainer trains after an answer, read from the
trained labels themselves, is a stop of the samples, the playground and chat (engine.samples.stop_token_ids) and of
the generation_config.json saved with the adapter (copied into the merged model; vLLM's --generation-config).
"""

from __future__ import annotations

import json

import pytest
from fixtures.template_families import FAMILIES, LLAMA3_1_STOPS, load_family

from engine.data import IGNORE_INDEX, tokenize_rows
from engine.data.stops import save_generation_config, stop_tokens
from engine.samples import stop_token_ids

TURNS = [{"role": "user", "content": "What color is a lemon?"}, {"role": "assistant", "content": "Yellow."},
         {"role": "user", "content": "And a tomato?"}, {"role": "assistant", "content": "Red."}]


def specials(tok) -> set[str]:
    """Every special token of the tokenizer, as it names them (its named ones and its added special tokens)."""
    return set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values() if t.special}


def trained_ends(tok) -> set[int]:
    """The last trained token of every answer of a chat row and of text rows (one plain, one ending in each special
    token: a document ending in its separator, a conversation rendered already), from the trainer's labels."""
    rows = [({"messages": TURNS}, "chat"), ({"text": "Once upon a time."}, "text")]
    rows += [({"text": f"Once upon a time.{s}"}, "text") for s in sorted(specials(tok))]
    ends = set()
    for row, fmt in rows:
        (ex,) = tokenize_rows([row], fmt, ["t:1"], tok, max_seq_length=4096)
        lab = ex.labels
        ends |= {ex.input_ids[i] for i in range(len(lab))
                 if lab[i] != IGNORE_INDEX and (i + 1 == len(lab) or lab[i + 1] == IGNORE_INDEX)}
    return ends


def saved_generation_eos(tok, tmp_path, base_eos) -> list[int]:
    from transformers import GenerationConfig

    save_generation_config(GenerationConfig(eos_token_id=base_eos), tok, tmp_path)
    return json.loads((tmp_path / "generation_config.json").read_text())["eos_token_id"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_stops_on_exactly_what_it_trained_to_end_with(tmp_path, name):
    tok = load_family(FAMILIES[name], tmp_path, with_pad=False)
    ends = trained_ends(tok)
    assert set(stop_token_ids(tok)) == ends, (tok.convert_ids_to_tokens(stop_token_ids(tok)),
                                              tok.convert_ids_to_tokens(sorted(ends)))
    assert ends <= set(saved_generation_eos(tok, tmp_path, tok.eos_token_id))


def _eot_tokenizer():
    """A template whose answers end in a special token of its own, neither the EOS nor a name a list of known
    end-of-turn tokens would hold (`<|eot|>`, the way Llama 4 ends a turn, beside the EOS `<|end_of_text|>`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>"]
    words = ["[UNK]", "user", "assistant", "What", "color", "is", "a", "lemon", "?", "Yellow", ".", "And", "tomato",
             "Red", "Once", "upon", "time"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words + specials)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<|begin_of_text|>",
                                 eos_token="<|end_of_text|>", additional_special_tokens=specials[2:])
    hf.chat_template = ("{{ bos_token }}{% for m in messages %}<|header_start|>{{ m['role'] }}<|header_end|>\n\n"
                        "{{ m['content'] }}<|eot|>{% endfor %}"
                        "{% if add_generation_prompt %}<|header_start|>assistant<|header_end|>\n\n{% endif %}")
    hf.pad_token = hf.eos_token
    return hf


def test_an_end_of_turn_token_no_list_names_is_a_stop(tmp_path):
    tok = _eot_tokenizer()
    eot, eos = tok.convert_tokens_to_ids("<|eot|>"), tok.eos_token_id
    # answers end in <|eot|>, text rows in the EOS (one ending in a header too: the EOS goes after it)
    assert trained_ends(tok) == {eot, eos}
    assert set(stop_token_ids(tok)) == {eot, eos}
    # the base model's generation config stops on its EOS only: the saved one adds what training ended with
    assert saved_generation_eos(tok, tmp_path, eos) == [eos, eot]


def test_the_saved_generation_config_keeps_the_base_models_sampling_defaults(tmp_path):
    """The merged model and vLLM's --generation-config serve with it: an instruct model's temperature and top_p
    are the base's, not the library defaults."""
    from transformers import GenerationConfig

    tok = _eot_tokenizer()
    base = GenerationConfig(eos_token_id=tok.eos_token_id, do_sample=True, temperature=0.6, top_p=0.9)
    save_generation_config(base, tok, tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert (saved["do_sample"], saved["temperature"], saved["top_p"]) == (True, 0.6, 0.9)
    assert saved["eos_token_id"][:2] == [tok.eos_token_id, tok.convert_tokens_to_ids("<|eot|>")]


@pytest.mark.parametrize(("name", "separator"), [("llama3", "<|end_of_text|>"), ("qwen2_5", "<|endoftext|>"),
                                                 ("qwen3", "<|endoftext|>")])
def test_a_text_row_ending_in_its_separator_trains_it_and_generation_stops_on_it(tmp_path, name, separator):
    """A document ending in its separator, not the EOS (Llama 3 Instruct's EOS is <|eot_id|>, Qwen's <|im_end|>):
    the separator is its last trained token, no EOS after it; the samples, playground and chat stop on it."""
    tok = load_family(FAMILIES[name], tmp_path, with_pad=False)
    (ex,) = tokenize_rows([{"text": f"Once upon a time.{separator}"}], "text", ["t:1"], tok, max_seq_length=4096)
    assert tok.convert_ids_to_tokens(ex.input_ids[-1:]) == [separator] != [tok.eos_token]
    assert ex.input_ids[-1] in stop_token_ids(tok)


@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.published_stops])
def test_generation_stops_on_what_the_family_publishes_not_on_every_special_token(tmp_path, name):
    """Llama 3 has 256 special tokens, some 250 of them reserved: the stops are those its generation_config.json
    publishes (<|end_of_text|>, <|eom_id|>, <|eot_id|>) and what training ended answers with, not all of them; the
    saved generation_config.json stops on exactly the published ones where training ended answers in one of them."""
    from transformers import GenerationConfig

    family = FAMILIES[name]
    tok = load_family(family, tmp_path, with_pad=False)
    assert stop_tokens(tok) == list(dict.fromkeys([family.end_of_turn or family.eos, family.eos,
                                                   *family.published_stops]))
    base = GenerationConfig.from_pretrained(tmp_path / f"{name}-nopad")  # the base model's, as the trainer has it
    published = tok.convert_tokens_to_ids(family.published_stops)
    assert base.eos_token_id == published
    assert saved_generation_eos(tok, tmp_path, base.eos_token_id) == published


@pytest.mark.parametrize("name", ["llama3", "llama3_1", "qwen2_5"])
def test_a_text_row_ending_in_a_special_token_that_is_no_stop_gets_the_eos_after_it(tmp_path, name):
    tok = load_family(FAMILIES[name], tmp_path, with_pad=False)
    other = next(t for t in sorted(specials(tok)) if t not in stop_tokens(tok) and t != tok.bos_token)
    (ex,) = tokenize_rows([{"text": f"Once upon a time.{other}"}], "text", ["t:1"], tok, max_seq_length=4096)
    assert tok.convert_ids_to_tokens(ex.input_ids[-2:]) == [other, tok.eos_token]
    assert ex.labels[-2:] == ex.input_ids[-2:]


def test_an_adapter_loaded_back_stops_where_its_run_did(tmp_path):
    """The playground and chat load the tokenizer from the adapter: the generation_config.json saved with it names
    the published stops, so they stop on what training did."""
    from engine.data.prompt import PromptStyle, save_for_inference
    from engine.model import load_tokenizer

    tok = load_family(FAMILIES["llama3_1"], tmp_path, with_pad=False)
    save_for_inference(tok, PromptStyle("chat"), tmp_path / "adapter")
    assert stop_token_ids(load_tokenizer(str(tmp_path / "adapter"))) == stop_token_ids(tok)
    assert json.loads((tmp_path / "adapter" / "generation_config.json").read_text())["eos_token_id"] == \
        tok.convert_tokens_to_ids(LLAMA3_1_STOPS)


def test_offline_without_the_published_stops_the_playground_chat_and_train_log_say_so(tmp_path, monkeypatch):
    """A hub model whose generation_config.json is not in the Hugging Face cache while the hub is out of reach: the
    stops its makers publish there (Llama 3.1's <|end_of_text|>, <|eom_id|>) are unknown, and generation may run
    past where training ended a text row. The tokenizer carries a line saying so (shown by the playground, chat and
    train.log); with the file there, or a local directory without one (then the model publishes none), it has none.
    (The cache is stood in for by a local directory read cache-only: engine.model.cache_only_for.)"""
    import engine.model
    from engine.data.stops import unknown_stops_note
    from engine.model import load_tokenizer

    tok = load_family(FAMILIES["llama3_1"], tmp_path, with_pad=False)
    folder = tmp_path / "llama3_1-nopad"
    monkeypatch.setattr(engine.model, "cache_only_for", lambda path: True)   # the hub out of reach
    cached = load_tokenizer(str(folder))
    assert unknown_stops_note(cached) is None and stop_tokens(cached) == stop_tokens(tok)
    (folder / "generation_config.json").unlink()
    offline = load_tokenizer(str(folder))
    assert set(stop_tokens(tok)) - set(stop_tokens(offline)) == {"<|end_of_text|>", "<|eom_id|>"}
    note = unknown_stops_note(offline)
    assert note and "generation_config.json" in note and "config.json's eos_token_id" in note, note
    monkeypatch.setattr(engine.model, "cache_only_for", lambda path: False)   # a local directory: the truth
    assert unknown_stops_note(load_tokenizer(str(folder))) is None


# A chat template whose answers end in no end token (`Human:`/`Assistant:` turns as text, as community templates for
# base models write them): the EOS after an answer is the trainer's.
NO_END_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}Human: {{ m['content'] }}\n"
                   "{% else %}Assistant: {{ m['content'] }}\n{% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}Assistant: {% endif %}")
NO_END = {"no_end_sentencepiece": "mistral_base", "no_end_bytelevel": "llama3_base"}


@pytest.mark.parametrize("train_on", ["completions", "all"])
@pytest.mark.parametrize("name", [*FAMILIES, *NO_END])
def test_every_answer_is_followed_by_a_trained_stop_whatever_is_trained(tmp_path, name, train_on):
    """What training teaches to follow an answer is a token generation stops on, or nothing (masked: an earlier
    answer's `Human:` header with train_on completions, as a server renders the history). With train_on all the text
    after an answer is trained too: were that the next turn's header, the model would learn to write the user's next
    turn and run on."""
    tok = load_family(FAMILIES[NO_END.get(name, name)], tmp_path, with_pad=False)
    if name in NO_END:
        tok.chat_template = NO_END_TEMPLATE
    (ex,) = tokenize_rows([{"messages": TURNS}], "chat", ["t:1"], tok, max_seq_length=4096, train_on=train_on)
    stops, at = set(stop_token_ids(tok)), 0
    for answer in [m["content"] for m in TURNS if m["role"] == "assistant"]:
        at = next(i for i in range(at, len(ex.input_ids)) if tok.decode(ex.input_ids[:i + 1]).rstrip().endswith(answer))
        after, label = ex.input_ids[at + 1], ex.labels[at + 1]
        assert label == IGNORE_INDEX or (after in stops and label == after), \
            (answer, tok.convert_ids_to_tokens(ex.input_ids[at + 1:at + 3]))
        at += 1
