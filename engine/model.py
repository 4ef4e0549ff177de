"""Loading the base model: hub id or local directory, quantisation, dtype by hardware, LoRA targets."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from engine.config import NOT_ADAPTED, not_adapted_problem
from engine.errors import ModelError, UserError
from engine.settings import GIB, hub_token_env, local_rank


def resolve_model_path(model: str) -> str:
    """A local directory, the demo id, a model preset's short name (its hub id: the estimate already reads
    `llama-3-8b` as meta-llama/Meta-Llama-3-8B, so the trainer loads that one), or a hub id (returned unchanged)."""
    from engine.demo.model import DEMO_MODEL_ID, ensure_demo_model

    if model == DEMO_MODEL_ID:
        return str(ensure_demo_model())
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelError(f"{model}: not a model directory (expected a folder with config.json)")
        return str(p)
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model
    if looks_local:
        raise ModelError(f"{model}: model directory not found")
    if "/" not in model:   # a hub id always names its owner: a bare name is a preset's alias or none
        from engine.estimate.presets import find_model_preset

        if preset := find_model_preset(model):
            return str(preset["id"])
    return model


def cache_only_for(path: str) -> bool:
    """Whether a from_pretrained of `path` must read the Hugging Face cache only: a hub id while the hub is out of
    reach (engine.hub's rule), where huggingface_hub would retry for a minute before looking there. A local
    directory never asks the hub."""
    if Path(path).is_dir():
        return False
    from engine.hub import hub_reachable

    return not hub_reachable()


def hub_token() -> str | None:
    """The hub token from the environment or the Hugging Face cache; never written anywhere by us."""
    if token := hub_token_env():
        return token
    try:
        from huggingface_hub import get_token
        return get_token()
    except (ImportError, OSError):  # no huggingface_hub, no readable cache: public models still load
        return None


def check_model_reachable(model: str) -> None:
    """Fails fast with a clear message when a hub id cannot be fetched (offline, typo, gated).

    The estimate's fetch is used: it looks in the cache first and probes the hub with a short
    timeout, where huggingface_hub itself would retry for ~20 s before giving up offline.
    """
    resolved = resolve_model_path(model)   # a preset's short name: its hub id, where the weights come from
    if Path(resolved).is_dir():
        return
    from engine.estimate.model_config import hub_config

    # A preset gives the estimate its shapes; training loads the weights, so only these help.
    hub_config(resolved, instead="training loads the model's weights: run it with the hub reachable (they download "
                                 "once, then come from the cache), or use a local directory holding the model")


def check_text_decoder_of(model: str) -> None:
    """The trainer's own check of a multimodal checkpoint (engine.estimate.multimodal: the rule the estimate and the
    launcher apply), on config.json as the weights' load will find it (a directory, or the hub's cache), before
    anything loads: a resume or a Config built in code meets it too. A run already trained on one is still served,
    exported and chatted with (they load the base as it trained)."""
    from engine.estimate.multimodal import check_text_decoder

    path = resolve_model_path(model)
    check_text_decoder(_json_file(path, "config.json", cache_only_for(path)) or {}, model)


@dataclass
class Hardware:
    device: str          # "cuda" or "cpu"
    name: str
    bf16: bool
    capability: tuple[int, int] | None
    count: int
    memory_gib: float | None = None   # per GPU


def detect_hardware() -> Hardware:
    import torch

    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(0)
        total = torch.cuda.get_device_properties(0).total_memory / GIB
        from engine.gpu import gpu_memory_cap, supports_bf16

        limit = gpu_memory_cap()
        if limit is not None and limit < total:
            device = local_rank()  # the rank's own GPU, before the Trainer selects it
            torch.cuda.set_per_process_memory_fraction(limit / total, device)
            total = limit
        return Hardware("cuda", torch.cuda.get_device_name(0), supports_bf16(cap), cap, torch.cuda.device_count(),
                        total)
    return Hardware("cpu", "cpu", False, None, 0)


def compute_dtype_name(precision: str, hw: Hardware) -> str:
    """bf16 on Ampere and newer, fp16 on older GPUs (T4, V100), fp32 on the CPU.

    An explicit bf16 on an older GPU is refused: it would run emulated, many times slower, or fail.
    """
    if precision == "bf16" and hw.device == "cuda" and not hw.bf16:
        from engine.errors import ConfigError
        cap = ".".join(map(str, hw.capability)) if hw.capability else "unknown"
        raise ConfigError(f"training.precision: bf16 needs an Ampere or newer GPU (compute capability 8.0); "
                          f"this {hw.name} has compute capability {cap}",
                          fix="set training.precision to auto (fp16 on this GPU) or fp16")
    from engine.plan import Machine, precision_for   # the plan's rule, so the estimate speaks of this dtype

    return precision_for(precision, Machine(hw.device, hw.name, bf16=hw.bf16))


def torch_dtype(name: str):
    import torch
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_tokenizer(model: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    # An adapter directory holds a tokenizer but no config.json: take any directory as it is.
    path = model if Path(model).is_dir() else resolve_model_path(model)
    cache_only = cache_only_for(path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, token=hub_token(),
                                            local_files_only=cache_only)
    except (OSError, ValueError) as e:   # ValueError: a directory without tokenizer files, a broken one
        fix = ("a model directory needs its tokenizer files (tokenizer.json, tokenizer_config.json)"
               if Path(path).is_dir() else
               f"{path} is fetched from the Hugging Face hub: with the hub reachable it downloads once, then comes "
               "from the cache (offline it must be there already); or use a local directory holding the model")
        reason = ("the hub is unreachable (offline?) and the tokenizer is not in the Hugging Face cache" if cache_only
                  else str(e).splitlines()[0])
        raise ModelError(f"{model}: cannot load tokenizer: {reason}", fix=fix) from None
    if not keeps_text(tok):
        tok = _tokenizer_as_saved(model, path, tok, cache_only)
    if tok.pad_token is None:
        # Padding is masked by position, so reusing EOS as pad is safe here.
        tok.pad_token = tok.eos_token
    from engine.data.stops import PUBLISHED_STOPS, STOPS_UNKNOWN

    ids, read = published_stops_read(path, cache_only)
    setattr(tok, PUBLISHED_STOPS, ids)
    if cache_only and read != "generation_config.json":
        # Offline, and the file is not in the cache: whether the makers publish more stops is not known here
        setattr(tok, STOPS_UNKNOWN, f"{model}: the hub is out of reach and the Hugging Face cache has no "
                                    "generation_config.json naming its stops, so the stops its makers publish are "
                                    "unknown here: generation stops on the trained end tokens and the EOS"
                                    + (" (and config.json's eos_token_id)" if read else ""))
    return tok


def published_stops_read(path: str, cache_only: bool = False) -> tuple[list[int], str | None]:
    """(the ids the model's makers say generation stops on, the file they were read from): generation_config.json's
    eos_token_id, else config.json's (transformers makes the generation config from it then); ([], None) when
    neither is in reach. Llama 3.1 Instruct: <|end_of_text|>, <|eom_id|>, <|eot_id|>; Qwen2.5: <|im_end|>,
    <|endoftext|>. An adapter directory has the generation_config.json its run saved (engine.train.run): the stops
    that run trained with."""
    for name in ("generation_config.json", "config.json"):
        eos = (_json_file(path, name, cache_only) or {}).get("eos_token_id")
        ids = [i for i in (eos if isinstance(eos, list) else [eos]) if isinstance(i, int) and not isinstance(i, bool)]
        if ids:
            return ids, name
    return [], None


def _json_file(path: str, name: str, cache_only: bool = False) -> dict | None:
    """A JSON object file of the model (a directory, or a hub id through the cache the weights come from); None where
    it is out of reach, unreadable, not JSON or not an object."""
    from transformers.utils import cached_file

    from engine.json_file import read_table

    try:
        found = cached_file(path, name, token=hub_token(), local_files_only=cache_only,
                            _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False, _raise_exceptions_for_gated_repo=False)
    except (OSError, ValueError):
        return None
    return read_table(found) if found else None


# Plain words, spaces and punctuation: every tokenizer of a language model gives these back as they were.
_PROBE = "the answer is yes, 42."


def keeps_text(tok) -> bool:
    """Whether the tokenizer gives plain text back from its tokens (no character lost on the way)."""
    ids = tok(_PROBE, add_special_tokens=False)["input_ids"]
    return tok.decode(ids, skip_special_tokens=True).strip() == _PROBE


def _tokenizer_as_saved(model: str, path: str, loaded, cache_only: bool):
    """The directory's tokenizer.json as it is, when the class transformers chose rebuilds it wrong.

    transformers 5 picks the tokenizer class from config.json's model_type (a qwen2 config gives
    Qwen2Tokenizer) even where tokenizer_config.json names another, and that class rebuilds its own
    pipeline (Qwen2's byte-level BPE) from the vocabulary, ignoring the file's: a tokenizer of another
    kind (SentencePiece `▁` pieces, say) then silently loses characters, and short answers every token.
    """
    from transformers import PreTrainedTokenizerFast

    try:
        tok = PreTrainedTokenizerFast.from_pretrained(path, token=hub_token(), local_files_only=cache_only)
    except (OSError, ValueError):
        tok = None
    if tok is None or not keeps_text(tok):
        raise ModelError(f"{model}: the tokenizer loses text: {_PROBE!r} comes back as "
                         f"{loaded.decode(loaded(_PROBE, add_special_tokens=False)['input_ids']).strip()!r}",
                         fix="check that tokenizer.json and tokenizer_config.json belong to this model")
    warnings.warn(f"{model}: {type(loaded).__name__} (chosen from config.json's model_type) does not match "
                  "this tokenizer.json; using tokenizer.json as it is", RuntimeWarning, stacklevel=3)
    return tok


def quiet_progress_bars() -> None:
    """transformers' own progress bars off, for a verb that loads or saves a model ("Loading weights 0%...100%",
    "Writing model shards" on stderr; carriage returns in a captured log): the verb says in a line what it loads.

    The hub's download bars stay as they were: a base model not in the cache is gigabytes to fetch, and its bar is
    the only sign of progress (transformers' switch turns both off; the hub's is turned back on unless the user
    turned it off, HF_HUB_DISABLE_PROGRESS_BARS). The log level, warnings and errors, is left as it is."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_off = are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    if not hub_off:
        enable_progress_bars()


def causal_lm(path: str, **kwargs):
    """AutoModelForCausalLM.from_pretrained, with the Hub's kernels off.

    transformers 5.25 swaps layers for kernels it downloads from the Hub at load time (use_kernels defaults to on
    when the `kernels` package is installed, and 5.25 requires it): code fetched at load, a path neither the
    estimate nor the speed table measured, and, offline, a load that fails ("Version 2 of 'kernels-community/rotary'
    is not available in the local cache": measured on an H200, 2026-12-03). lorapilot picks its kernels itself
    (engine.train.speed)."""
    from transformers import AutoModelForCausalLM

    kwargs.setdefault("local_files_only", cache_only_for(path))  # offline: the cached weights, without retries
    return AutoModelForCausalLM.from_pretrained(path, use_kernels=False, **kwargs)


def load_base_model(model: str, quantization: str, precision: str, *, trust_remote_code: bool = False,
                    device_map=None, attn_implementation: str | None = None, shardable: bool = False):
    """The base model, quantised as asked; returns (model, dtype name).

    shardable: the 4-bit weights are stored in the compute dtype, so that FSDP shards them alongside the
    unquantised ones (accelerate's FSDP2 preparation leaves 4-bit weights of any other dtype whole on every rank).
    """
    from transformers import BitsAndBytesConfig

    hw = detect_hardware()
    dtype_name = compute_dtype_name(precision, hw)
    dtype = torch_dtype(dtype_name)
    kwargs = dict(trust_remote_code=trust_remote_code, token=hub_token(), dtype=dtype)
    if attn_implementation:
        from engine.train.varlen_attention import ATTENTION, register

        if attn_implementation == ATTENTION:
            register()
        kwargs["attn_implementation"] = attn_implementation
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, **({"bnb_4bit_quant_storage": dtype} if shardable else {}))
    elif quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if hw.device == "cuda":
        kwargs["device_map"] = device_map if device_map is not None else {"": local_rank()}
    path = resolve_model_path(model)
    try:
        m = causal_lm(path, **kwargs)
    except OSError as e:
        raise ModelError(f"{model}: cannot load model: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        # transformers' refusals of what this model cannot do (an attention implementation it does not support, a
        # quantisation it cannot take, a config it does not know) reach the user as a message, not a traceback
        raise ModelError(f"{model}: transformers cannot load it as configured: {_first_sentence(e)}",
                         fix=_load_fix(str(e), attn_implementation, quantization)) from None
    if hw.device == "cpu":
        keep_cpu_4bit_layout(m)
    return m, dtype_name


def _first_sentence(error: Exception) -> str:
    """The first sentence of an error's message (transformers' run on with issue links and examples)."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line.split(". ")[0].rstrip(".")


_REMOTE_CODE_FIX = ("trust_remote_code: true in the config (--trust-remote-code for a run directory), only after "
                    "reading the code the model ships")


def _load_fix(message: str, attn_implementation: str | None, quantization: str) -> str:
    """What to change when transformers refuses to load a model (load_base_model): only what would help. A
    model_type transformers does not know is no quantisation problem (quantization: none fails the same way): a
    newer transformers knows it, or the model's own code does."""
    import transformers

    version = f"transformers {transformers.__version__}"
    if attn_implementation and "attention implementation" in message:
        return (f"the plan chose {attn_implementation} attention, which this architecture does not support: "
                "training.packing (on or off) decides it; please report the model, so that the plan learns it")
    if "does not recognize this architecture" in message:
        return (f"{version} does not know this model_type (config.json): upgrade it (pip install -U transformers); a "
                f"model that ships its own modelling code (auto_map in config.json) needs {_REMOTE_CODE_FIX}")
    if "contains custom code" in message or "trust_remote_code" in message:
        return f"the model ships its own modelling code: {_REMOTE_CODE_FIX}"
    if "Unrecognized configuration class" in message:
        return (f"{version} has no causal language model (AutoModelForCausalLM) for this config.json's model_type: "
                "lorapilot fine-tunes decoder-only text models; pick one (or the model's text-generation variant)")
    if "dispatched on the CPU or the disk" in message:
        return ("the quantised model does not fit the GPU's memory (quantization: none needs more): a smaller "
                "model or a larger GPU; lorapilot estimate says how much it needs")
    if quantization != "none" and ("quantiz" in message.lower() or "bitsandbytes" in message.lower()):
        return (f"quantization: {quantization} does not suit this checkpoint (it may be quantised already, its "
                "config.json's quantization_config): try quantization: none")
    return (f"check that the model is a causal language model {version} supports (its config.json model_type); "
            f"a newer transformers, or for a model with its own code {_REMOTE_CODE_FIX}")


def keep_cpu_4bit_layout(model) -> None:
    """Turns off bitsandbytes' CPU inference repacking of 4-bit weights.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 rewrites a Linear4bit's weight in place into a packed layout at
    its first forward in eval mode without grad, which is what samples and the playground do between training
    steps. The repacking assumes in_features is a multiple of the quantisation block (64) and raises otherwise
    (a 352-wide MLP, the demo's before v4: "shape '[128, 5]' is invalid"), and where it succeeds it changes the layout of
    weights that training goes on using. The unpacked path is the one every other CPU takes.
    """
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def unquantised_as_trained(model, quantization: str) -> int:
    """Puts a quantised base's fp16 unquantised weights (norms, embeddings, lm_head) in fp32, as training computed
    with them: peft's kbit preparation (add_lora) upcasts them, and the trainer casts them back only in bf16
    (engine.train.speed.keep_unquantised_16bit). For the playground and chat, which load the base without that
    preparation: on an fp16 GPU (T4, V100) they ran the residual stream in fp16 where training ran it in fp32
    (logits off by 0.006 on the demo, and an overflow where fp32 had room). Returns the parameters cast."""
    import torch

    if quantization == "none":
        return 0
    n = 0
    for p in model.parameters():
        if p.dtype == torch.float16 and p.__class__.__name__ not in ("Params4bit", "Int8Params"):
            p.data = p.data.to(torch.float32)
            n += p.numel()
    return n


def linear_modules(model) -> list[str]:
    """Full names of the linear layers LoRA can adapt (4-bit and 8-bit layers included), the output head left out."""
    import torch

    return [full for full, mod in model.named_modules()
            if full.rsplit(".", 1)[-1] not in NOT_ADAPTED    # the output head (the embeddings are no linear layers)
            and (isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt"))]


def linear_module_names(model) -> list[str]:
    """Short names of the linear layers LoRA can adapt (4-bit and 8-bit layers included)."""
    return sorted({full.rsplit(".", 1)[-1] for full in linear_modules(model)})


def router_modules(model) -> set[str]:
    """Full names of a mixture's routers and the modules inside them (engine.estimate.params.ROUTER_NAMES: GraniteMoE's
    router.layer among them); none in a dense model, whatever its modules are named."""
    from engine.estimate.params import EXPERTS_KEYS, ROUTER_NAMES

    config = getattr(model, "config", None)
    config = getattr(config, "get_text_config", lambda: config)()
    if not any((getattr(config, key, None) or 1) > 1 for key in EXPERTS_KEYS):
        return set()
    return {full for full, _ in model.named_modules() if set(full.split(".")) & set(ROUTER_NAMES)}


def peft_target_modules(model, target_modules):
    """What peft is given for lora.target_modules: all-linear as peft resolves it, less a mixture's routers (peft's
    all-linear adapts them: a linear router as any linear layer, and the gate it maps with the stacked experts). Each
    name is a module's last (peft matches by suffix), or a full name where a router shares the last name."""
    routers = router_modules(model)
    if target_modules != "all-linear" or not routers:
        return target_modules
    from engine.estimate.params import EXPERT_STACK_NAMES, ROUTER_NAMES

    router_short = {full.rsplit(".", 1)[-1] for full in routers}
    names: list[str] = []
    for full in linear_modules(model):
        if full in routers:
            continue
        short = full.rsplit(".", 1)[-1]
        names.append(full if short in router_short else short)
    stacks = EXPERT_STACK_NAMES.get(getattr(model.config, "model_type", ""), ())
    return sorted({*names, *(n for n in stacks if n not in ROUTER_NAMES)})


def check_target_modules(model, target_modules) -> None:
    """Names the model has as linear layers, or that peft maps onto a mixture's stacked experts (gate_proj on
    Qwen3-MoE, w1 on Mixtral: engine.estimate.params.EXPERT_STACK_NAMES)."""
    if target_modules == "all-linear":
        return
    from engine.estimate.params import EXPERT_STACK_NAMES, ROUTER_NAMES, router_problem

    problem = not_adapted_problem(list(target_modules))
    if problem:   # config validation refuses these first; a Config built in code meets the same rule here
        raise ModelError(problem)
    model_type = getattr(model.config, "model_type", "")
    mixture = bool(router_modules(model))
    if mixture and (routed := router_problem(model_type, target_modules)):
        raise ModelError(routed[0], fix=routed[1])

    stacks = EXPERT_STACK_NAMES.get(model_type, ())
    linear = linear_module_names(model)
    valid = [n for n in linear + [n for n in stacks if n not in linear] if not (mixture and n in ROUTER_NAMES)]
    wrong = [t for t in target_modules if t not in valid]
    if wrong:
        raise ModelError(f"lora.target_modules: {', '.join(repr(w) for w in wrong)} not in this model",
                         fix=f"valid names: {', '.join(valid)} (or all-linear)")


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing, non-reentrant. transformers 5.2x renamed it (the old names warn in
    every train.log, and go in v6); the GPU image's 5.17 knows only the old ones."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(model, cfg, *, gradient_checkpointing: bool):
    """Prepares a (quantised) base for training and wraps it with LoRA adapters."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    check_target_modules(model, cfg.lora.target_modules)
    # The launcher refused it from config.json before anything loaded; a Config built in code meets it here
    _refuse_expert_dropout(model.config, cfg)
    # With a KV cache, transformers stops reading packed position_ids and lets packed examples attend
    # to each other; training never needs the cache.
    model.config.use_cache = False
    if cfg.quantization in ("nf4", "int8"):
        # peft would enable checkpointing through transformers' deprecated name; with use_reentrant False
        # that call is all its use_gradient_checkpointing does, so it is done here instead
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if gradient_checkpointing:
            enable_checkpointing(model)
    elif gradient_checkpointing:
        enable_checkpointing(model)
        model.enable_input_require_grads()
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=peft_target_modules(model, cfg.lora.target_modules), bias="none",
                      task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # peft reads transformers' deprecated is_gradient_checkpointing: an upstream notice, not the user's to act on
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        try:
            return get_peft_model(model, lora)
        except ValueError as e:
            # a mixture peft adapts as parameters that the rule's table does not know yet (a newer peft)
            if "lora_dropout" not in str(e) or not cfg.lora.dropout:
                raise
            _refuse_expert_dropout(model.config, cfg, adapted=True)
            raise


def adapter_on_meta(cfg):
    """The model with its LoRA adapters as the trainer builds them for `cfg` (add_lora), on the meta device from the
    model's config.json: the adapter's module names and shapes without a weight read or a byte of memory, for the
    launcher's resume check (engine.train.resume_check.refuse_before_load). cfg.trust_remote_code: as the caller
    resolved it (rundir.check_remote_code). What add_lora refuses (a target the model does not have) it refuses here
    as in the trainer. None where it cannot be built so (config.json out of reach, a model's own code not trusted, an
    architecture that does not build on the meta device): the trainer's check, on the model it loads, decides then,
    and its load or build says what is wrong in the run's own record."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(cfg.model)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, token=hub_token(),
                                            local_files_only=cache_only_for(path))
        with torch.device("meta"):   # the adapters too: made where they are built, not on the CPU first
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
            return add_lora(model, cfg, gradient_checkpointing=False)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - see the docstring: a check the trainer makes anyway, on the loaded model
        return None


def _refuse_expert_dropout(config, cfg, *, adapted: bool | None = None) -> None:
    """The rule of LoRA dropout on a mixture's stacked experts (engine.estimate.params.expert_dropout_problem) as
    the trainer's refusal; config: the loaded model's (its attention's names for the fix); adapted=True: peft refused
    it where the rule did not see it coming (its table is behind)."""
    from engine.estimate.params import attention_targets, expert_dropout_fix, expert_dropout_problem

    problem = expert_dropout_problem(getattr(config, "model_type", ""), cfg.lora, adapted=adapted)
    if problem:
        raise ModelError(problem, fix=expert_dropout_fix(attention_targets(config.to_dict()))) from None
