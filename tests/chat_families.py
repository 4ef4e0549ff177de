"""Local tokenizers with each chat family's real special tokens, BOS/EOS/pad set-up and published chat template.

No hub access: the vocabulary is tiny (the specials and a few words), which is all the template renderer needs;
the chat templates are the published strings in tests/fixtures/chat_templates/ (see its README).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"

# family: (bos, eos, pad, other specials, template file or None)
FAMILIES = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", None,
               ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"], "llama3_instruct.jinja"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>", None,
                 ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|python_tag|>"],
                 "llama3_1_instruct.jinja"),
    "qwen2.5": (None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>"], "qwen2_5_instruct.jinja"),
    "mistral": ("<s>", "</s>", None, ["<unk>"], "mistral_7b_instruct_v0_2.jinja"),
    "gemma2": ("<bos>", "<eos>", "<pad>", ["<start_of_turn>", "<end_of_turn>"], "gemma2_it.jinja"),
    "alpaca-default": ("<s>", "</s>", None, ["<unk>"], None),
}


def family_tokenizer(family: str, *, pad: bool = True):
    """The family's tokenizer as lorapilot loads it (engine.model.load_tokenizer: pad = EOS when it has none)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad_token, others, template = FAMILIES[family]
    specials = [t for t in [bos, eos, pad_token, *others] if t]
    words = ["[UNK]", "user", "assistant", "system", "model", "the", "capital", "of", "is", "Paris", "Rome"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words + specials))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v}
    if pad and pad_token:
        kwargs["pad_token"] = pad_token
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                 additional_special_tokens=[t for t in others if t], **kwargs)
    if template:
        hf.chat_template = (TEMPLATES / template).read_text(encoding="utf-8")
    if hf.pad_token is None:
        hf.pad_token = hf.eos_token
    return hf
