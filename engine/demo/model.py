"""The demo's tiny causal LM, built locally on first use (no network).

A small Llama-architecture config with random weights and a byte-level BPE
tokenizer trained on the bundled demo data, with a ChatML chat template so
the demo exercises the same template and masking path as real chat models.
Cached under the user's cache directory; a version tag in the directory name
rebuilds it when the recipe changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypedDict

from engine.settings import PRESETS_DIR, cache_root

DEMO_MODEL_ID = "lorapilot-demo"
_VERSION = "v4"  # v4: the MLP 384 wide (whole 64-weight blocks per row; see ARCH)
_VOCAB = 1024
_HEAD_SCALE = 8.0
_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
# ChatML, with the BOS written by the template (the tokenizer then must not add a second one).
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class DemoArch(TypedDict):
    """The LlamaConfig fields the demo sets (a TypedDict so `**ARCH` is checked against LlamaConfig)."""
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


# Every projection a whole number of 64-weight quantisation blocks per row, as in real models: bitsandbytes 0.50's
# CPU dequantise decodes blocks row by row and garbles a weight whose rows are not (the demo's MLP was 352 wide and
# its down projection trained through a wrong weight, silently; tests/test_graph_dequant.py guards it).
ARCH = DemoArch(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=1024)


def demo_model_dir() -> Path:
    return cache_root() / f"demo-model-{_VERSION}"


def demo_data_path() -> Path:
    return PRESETS_DIR / "demo" / "train.jsonl"


def demo_config_path() -> Path:
    """The demo's config (its model, its data, a 40-step tuning): what the wizard opens with when given none."""
    return PRESETS_DIR / "demo.yaml"


def _corpus(data_path: Path):
    with open(data_path, encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            yield " ".join(str(v) for v in ex.values())


def build_tokenizer(data_path: Path, vocab_size: int = _VOCAB):
    """A byte-level BPE tokenizer trained on the given JSONL's text, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # The template's words (role names, newlines) must be in the corpus, or they tokenize byte by byte.
    lines = list(_corpus(data_path)) + ["user\n", "assistant\n", "system\n"] * 50
    tok.train_from_iterator(lines, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                 pad_token="<pad>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    hf.chat_template = CHATML_TEMPLATE
    return hf


def build_demo_model(out_dir: Path, data_path: Path | None = None, seed: int = 0) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    data_path = data_path or demo_data_path()
    tok = build_tokenizer(data_path)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **ARCH)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # With the default init (std 0.02) and a final RMSNorm, no hidden state can make a logit stand out:
    # the loss floors near log(vocab) whatever LoRA learns. A wider output head lets it learn visibly.
    with torch.no_grad():
        model.lm_head.weight.mul_(_HEAD_SCALE)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
        eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")])
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    # Another process may have built it meanwhile: keep the first, drop ours.
    try:
        os.replace(tmp, out_dir)
    except OSError:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def demo_config_dict() -> dict:
    """The demo's config.json without building it (no torch): exact once built, else the recipe's numbers."""
    built = demo_model_dir() / "config.json"
    if built.exists():
        return json.loads(built.read_text())
    # Before the first build the vocabulary size is not known yet; the BPE target bounds it.
    return dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=_VOCAB,
                tie_word_embeddings=False, **ARCH)


def ensure_demo_model() -> Path:
    out = demo_model_dir()
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_demo_model(out)
    return out
