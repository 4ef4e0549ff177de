"""What generation stops on: the end tokens training put after the answers, and the EOS.

The one rule for every place that generates or tells a server when to stop: the samples, the playground and
`lorapilot chat` (engine.samples), the generation_config.json saved with the adapter (and so the merged model's and
vLLM's --generation-config), the Ollama Modelfile's PARAMETER stop (engine.export.ollama, with its template's
turn markers). The end tokens are read from what the trainer's renderer trains, for a conversation of two answers
(every answer's end token is trained, engine/data/template.py), not from a list of known names: a model that
stops on a token it never learnt to write runs on. The EOS is added: text rows, and the defaults without a chat
template, end in it. So is every other special token a text row may end with: a text row that ends in one (a
document ending in Llama 3's `<|end_of_text|>` beside the EOS `<|eot_id|>`, Qwen's `<|endoftext|>` beside
`<|im_end|>`) is trained to end there, with no EOS after it; the rule that decides it is
engine.data.template.end_tokens, read here too (one rule). A chat, alpaca or completion row writes no special token
but its template's (one written in a message is trained as its characters), so stopping on the others costs those
nothing.
"""

from __future__ import annotations

from engine.errors import DataError

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


def stop_tokens(tokenizer) -> list[str]:
    """The trained end tokens of answers, the EOS, then every other token a text row may end with (by id)."""
    from engine.data.template import end_tokens

    eos = [tokenizer.eos_token] if tokenizer.eos_token else []
    vocab = tokenizer.get_vocab()
    row_ends = sorted(end_tokens(tokenizer), key=lambda t: (vocab.get(t, len(vocab)), t))
    return list(dict.fromkeys([*trained_end_tokens(tokenizer), *eos, *row_ends]))


def stop_token_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in stop_tokens(tokenizer) if t in vocab]
