"""What generation stops on: the end tokens training put after the answers, and the EOS.

The one rule for every place that generates or tells a server when to stop: the samples, the playground and
`lorapilot chat` (engine.samples), the generation_config.json saved with the adapter (and so the merged model's and
vLLM's --generation-config), the Ollama Modelfile's PARAMETER stop (engine.export.ollama, with its template's
turn markers). The end tokens are read from what the trainer's renderer trains, for a conversation of two answers
(every answer's end token is trained, engine/data/template.py), not from a list of known names: a model that
stops on a token it never learnt to write runs on. The EOS is added: text rows, and the defaults without a chat
template, end in it. So are the stops the model's makers publish (its generation_config.json's eos_token_id, read by
engine.model.load_tokenizer: Llama 3 Instruct's `<|end_of_text|>` beside the EOS `<|eot_id|>`, Llama 3.1's
`<|eom_id|>`, Qwen's `<|endoftext|>` beside `<|im_end|>`): a text row that ends in one of these stops (a document
ending in its separator, a conversation rendered already) is trained to end there, with no EOS after it; one that
ends in any other special token (one of Llama 3's 250 or so reserved ones, a role header) gets the EOS after it, as
every other text row (engine.data.template.Renderer._text reads stop_tokens, one rule). So generation stops on what
the family publishes and what training ended answers with, not on every special token of the vocabulary.
"""

from __future__ import annotations

from engine.errors import DataError

# The attribute engine.model.load_tokenizer sets on a tokenizer: the ids the model's makers publish as stops.
PUBLISHED_STOPS = "lorapilot_published_stops"
# and, where it could not read them (offline, generation_config.json not in the cache), why, in a line
STOPS_UNKNOWN = "lorapilot_stops_unknown"

PROBE = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."},
         {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome."}]


def split_end(end: str, known: list[str]) -> list[str]:
    """Trained end text as tokens ("<|eot_id|>"; a doubled "</s></s>" is one stop, not a stop of its own)."""
    out = []
    while end:
        token = next((t for t in known if end.startswith(t)), end)
        out.append(token)
        end = end[len(token):]
    return out


def trained_end_tokens(tokenizer) -> list[str]:
    """The end token of every answer the trainer trains, in order, once each."""
    from engine.data.template import Renderer

    renderer = Renderer(tokenizer)
    try:
        rendered = renderer.render({"messages": PROBE}, "chat", "stop tokens")
    except DataError:  # a template that refuses this conversation trains none like it: the EOS alone
        return []
    ends = [next((t for t in renderer.end_tokens if text.endswith(t)), None) for text, trained in rendered.segments
            if trained]
    return list(dict.fromkeys(t for t in ends if t))


def published_stops(tokenizer) -> list[str]:
    """The special tokens among the stops the model's makers publish (engine.model.published_stop_ids), as
    load_tokenizer found them; [] for a tokenizer built otherwise."""
    from engine.data.template import special_tokens

    ids = getattr(tokenizer, PUBLISHED_STOPS, None) or []
    specials = special_tokens(tokenizer)
    return [t for t in tokenizer.convert_ids_to_tokens([i for i in ids if 0 <= i < len(tokenizer)])
            if t in specials]


def unknown_stops_note(tokenizer) -> str | None:
    """Why the published stops are not known for this tokenizer (engine.model.load_tokenizer, offline without the
    model's generation_config.json in the cache), in a line; None where they were read, or there are none. The
    playground, chat and train.log say it: generation may then run past where the model's makers say it ends."""
    return getattr(tokenizer, STOPS_UNKNOWN, None)


def stop_tokens(tokenizer) -> list[str]:
    """The trained end tokens of answers, the EOS, then the published stops: every token a row may end with."""
    eos = [tokenizer.eos_token] if tokenizer.eos_token else []
    return list(dict.fromkeys([*trained_end_tokens(tokenizer), *eos, *published_stops(tokenizer)]))


def stop_token_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in stop_tokens(tokenizer) if t in vocab]


def save_generation_config(base, tokenizer, out_dir) -> None:
    """generation_config.json into out_dir (the adapter): the base model's generation config `base` (its sampling
    defaults, which the merged model and vLLM's --generation-config serve with; None: the published stops alone),
    stopping where training stopped too. Loaded back with the adapter's tokenizer (engine.model.load_tokenizer), its
    eos_token_id is the published stops of the playground and chat: those its run trained with."""
    from transformers import GenerationConfig

    if base is None:
        base = GenerationConfig(eos_token_id=list(getattr(tokenizer, PUBLISHED_STOPS, None) or []) or None)
    eos = base.eos_token_id if isinstance(base.eos_token_id, list) else [base.eos_token_id]
    eos += [t for t in stop_token_ids(tokenizer) if t not in eos]
    gen = GenerationConfig.from_dict(base.to_dict())
    gen.eos_token_id = [e for e in eos if e is not None]
    gen.pad_token_id, gen.bos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id
    gen.save_pretrained(str(out_dir))
