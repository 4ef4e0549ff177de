"""Greedy decoding as a loop of fixed-shape one-token steps, so that CUDA graphs can replay it.

`model.generate` on a 4-bit model with adapters is bound by the host: each new token launches thousands
of tiny kernels, and transformers does not compile generate for bitsandbytes models. Here the prompt is
prefilled once (eager), then every step has the same shapes (batch x 1 tokens, a static KV cache, a
fixed-size attention mask), so on CUDA the step can be compiled with mode="reduce-overhead" and replayed
as one graph per token. Tokens are the same as generate's greedy ones: argmax, pad after a stop id.
"""

from __future__ import annotations

import weakref

STOP_CHECK_EVERY = 16  # tokens between host checks of "every row has stopped" (each check syncs)

# The step compiled once per process. Its graph guards on the identity of the model and of the cache's
# static tensors, so each model keeps its cache between calls (reset, not rebuilt) to avoid recompiling.
# The price: the cache stays allocated during training (Llama-2-7B, bf16: 0.5 MiB per row per token).
_compiled_step = None
_kept_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Settings under which generate's greedy tokens are not plain argmax: this loop does not apply them.
_UNSUPPORTED_GENERATION = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                           "min_length": 0, "min_new_tokens": None, "bad_words_ids": None, "suppress_tokens": None,
                           "begin_suppress_tokens": None, "forced_bos_token_id": None,
                           "forced_eos_token_id": None, "sequence_bias": None}


def greedy_decode(model, prompts: list[list[int]], *, max_new_tokens: int, stop_ids: list[int], pad_id: int,
                  compile: bool = False) -> list[list[int]]:
    """The greedy continuation of each prompt: new tokens up to and including the first stop id.

    compile: capture the step in CUDA graphs (torch.compile "reduce-overhead"); only on CUDA, where the
    first call pays the compilation. Elsewhere the same loop runs eagerly.
    """
    import torch

    if not prompts:
        return []
    if max_new_tokens <= 0:
        return [[] for _ in prompts]
    net = _transformers_model(model)
    _check_plain_greedy(net)
    device = next(net.parameters()).device
    batch, width = len(prompts), max(len(p) for p in prompts)
    cache_len = width + max_new_tokens
    compiled = compile and device.type == "cuda"

    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    # The mask covers the whole cache from the start: the causal mask hides the slots not written yet,
    # so it never changes during the loop and the steps see one fixed tensor.
    mask = torch.ones(batch, cache_len, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        mask[row, :width - len(p)] = 0
    # As generate numbers them: each row from 0 at its first real token, left padding at 0.
    prompt_positions = (mask[:, :width].cumsum(-1) - 1).masked_fill(mask[:, :width] == 0, 0)
    stops = torch.tensor(stop_ids or [-1], device=device)

    with torch.no_grad():
        cache = _static_cache(net, model, cache_len, batch, keep=compiled)
        cache_argument = _cache_argument(net)  # once: the steps below are the hot loop
        logits = net(input_ids=ids, attention_mask=mask, position_ids=prompt_positions,
                     **{cache_argument: cache}, use_cache=True, logits_to_keep=1).logits
        first = logits[:, -1].argmax(-1)
        out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
        out[:, 0] = first
        done = torch.isin(first, stops)
        current = first[:, None].clone()                # the token fed to the next step
        positions = prompt_positions[:, -1:] + 1         # its position, per row
        pad = torch.tensor(pad_id, dtype=torch.long, device=device)
        step = _step_function(compiled)
        for t in range(1, max_new_tokens):
            if t % STOP_CHECK_EVERY == 0 and bool(done.all()):
                break
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            new, new_done = step(net, cache, current, positions, mask, done, stops, pad,
                                 cache_argument=cache_argument)
            # Copied out at once: a CUDA graph's outputs are overwritten by its next replay.
            out[:, t] = new
            current.copy_(new[:, None])
            done.copy_(new_done)
            positions.add_(1)
        rows = out.tolist()
    stop_set = set(stop_ids)
    return [_cut_after_stop(row, stop_set) for row in rows]


def _decode_step(net, cache, tokens, positions, attention_mask, done, stops, pad, *, cache_argument=None):
    """One token per row: the greedy choice, pad for rows that already stopped (as generate does)."""
    import torch

    logits = net(input_ids=tokens, attention_mask=attention_mask, position_ids=positions,
                 **{cache_argument or _cache_argument(net): cache}, use_cache=True).logits
    new = torch.where(done, pad, logits[:, -1].argmax(-1))
    return new, done | torch.isin(new, stops)


def _cache_argument(net) -> str:
    """transformers 5.2x renamed forward's past_key_values to cache (the old name warns, and goes in 5.40);
    the GPU image's 5.17 knows only the old one."""
    import inspect

    return "cache" if "cache" in inspect.signature(net.forward).parameters else "past_key_values"


def _step_function(compiled: bool):
    global _compiled_step
    if not compiled:
        return _decode_step
    if _compiled_step is None:
        import torch
        _compiled_step = torch.compile(_decode_step, mode="reduce-overhead", dynamic=False)
    return _compiled_step


def _static_cache(net, model, cache_len: int, batch: int, *, keep: bool):
    """A StaticCache for this batch; when kept (compiled steps), the model's previous one, reset."""
    from transformers import StaticCache

    if not keep:
        return StaticCache(config=net.config, max_cache_len=cache_len)
    key = (cache_len, batch)
    kept = _kept_caches.get(model)
    if kept is not None and kept[0] == key:
        kept[1].reset()
        return kept[1]
    cache = StaticCache(config=net.config, max_cache_len=cache_len)
    _kept_caches[model] = (key, cache)
    return cache


def _transformers_model(model):
    """The transformers model under a peft wrapper: LoRA layers live inside it, and calling it directly
    skips peft's forward hooks, which only matter for per-request adapter switching."""
    peft_config = getattr(model, "active_peft_config", None)
    if hasattr(model, "get_base_model") and not getattr(peft_config, "is_prompt_learning", False):
        return model.get_base_model()
    return model


def _check_plain_greedy(net) -> None:
    gen = getattr(net, "generation_config", None)
    for name, neutral in _UNSUPPORTED_GENERATION.items():
        value = getattr(gen, name, neutral)
        if value is not None and value != neutral:
            raise NotImplementedError(f"fast decode: generation_config.{name}={value!r} is not plain greedy")


def _cut_after_stop(row: list[int], stop_ids: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in stop_ids:
            return row[:i + 1]
    return row
