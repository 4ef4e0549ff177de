"""Parameter counts and layer shapes from a model's config.json, without weights.

Exact for the decoder families whose Hugging Face modelling code we mirror
(Llama, Mistral, Qwen2/2.5/3, Gemma 1/2/3, Phi-3; the mixtures Mixtral, Qwen2-MoE,
Qwen3-MoE, OLMoE, GraniteMoE, PhiMoE, DeepSeek-V2/V3; the text decoders of Llama 4 and
Qwen3.5, dense and MoE, with its linear-attention layers), pinned against the module tree
transformers builds from real config.json numbers (tests/test_estimate_params.py);
anything else is read as a Llama-like decoder from whatever keys it has, and
flagged approximate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.errors import ConfigError, ModelError

# model_type -> (norms per decoder layer, q/k/v carry a bias, fused qkv and gate_up)
_FAMILIES = {
    "llama": (2, False, False),
    "mistral": (2, False, False),
    "qwen2": (2, True, False),
    "qwen3": (2, False, False),
    "gemma": (2, False, False),
    "gemma2": (4, False, False),
    "gemma3_text": (4, False, False),
    "phi3": (2, False, True),
    # mixtures of experts (their experts, shared experts, dense layers and routers read below)
    "mixtral": (2, False, False),
    "qwen2_moe": (2, True, False),
    "qwen3_moe": (2, False, False),
    "olmoe": (2, False, False),
    "granitemoe": (2, False, False),
    "deepseek_v2": (2, False, False),
    "deepseek_v3": (2, False, False),
    "phimoe": (2, False, False),
    # the text decoders the trainer loads alone from a multimodal checkpoint (engine.estimate.multimodal)
    "llama4_text": (2, False, False),
    "qwen3_5_text": (2, False, False),
    "qwen3_5_moe_text": (2, False, False),
}
# The families whose norms are LayerNorms (a weight and a bias each, the final norm's too): PhiMoE's
_LAYER_NORMS = ("phimoe",)
# Qwen3.5's hybrid decoders: linear-attention layers (a gated delta net) between full-attention ones, whose query
# projection is twice as wide (its second half gates the attention's output)
_LINEAR_ATTENTION = ("qwen3_5_text", "qwen3_5_moe_text")
# The mixtures with one shared expert, an expert's width, in every sparse layer, whatever config.json says (Llama 4)
_ONE_SHARED_EXPERT = ("llama4_text",)
# The families whose config class ties the output head to the embeddings when config.json does not say (Gemma's do;
# Gemma 3's checkpoints leave tie_word_embeddings out), and those that normalise each query and key head
_TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3_text")
_QK_NORM = ("qwen3", "qwen3_moe", "gemma3_text", *_LINEAR_ATTENTION)
# OLMoE normalises the whole query and key projections (an RMSNorm of q_dim and one of kv_dim), not each head
_QK_NORM_WHOLE = ("olmoe",)
# The config classes' defaults where config.json leaves the key out (DeepSeek-V3's class makes its first 3 layers
# dense, GLM-4-MoE's its first; DeepSeek-V2's routes its queries through a q_lora_rank of 1536, Qwen2-MoE's class has
# Qwen1.5-MoE-A2.7B's shared expert)
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "deepseek_v2": {"first_k_dense_replace": 0, "n_shared_experts": 2, "q_lora_rank": 1536},
    "deepseek_v3": {"first_k_dense_replace": 3, "n_shared_experts": 1, "q_lora_rank": 1536},
    "glm4_moe": {"first_k_dense_replace": 1, "n_shared_experts": 1},
    "qwen2_moe": {"shared_expert_intermediate_size": 5632},
    "llama4_text": {"intermediate_size_mlp": 16384},
    "qwen3_5_text": {"head_dim": 256, "intermediate_size": 12288, "linear_conv_kernel_dim": 4,
                     "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_num_key_heads": 16,
                     "linear_num_value_heads": 32},
    "qwen3_5_moe_text": {"head_dim": 256, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
                         "linear_value_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
                         "num_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 512,
                         "shared_expert_intermediate_size": 512},
}
# config.json's layer_types that mix tokens by softmax attention alone: a packed row's examples stay apart (positions
# restart, each example's own causal triangle). Any other kind (linear_attention, mamba, conv, recurrent, ...) carries
# state from token to token outside attention, or is not known to keep the examples apart (indexed_attention).
ATTENTION_LAYER_KINDS = ("full_attention", "sliding_attention", "chunked_attention", "attention")
# The families of transformers' models (5.25) whose decoder layers carry state across tokens outside attention, where
# config.json may have no layer_types (their config classes derive them, or a pattern of their own): a gated delta
# net's causal convolution and recurrence (Qwen3.5, Qwen3-Next, Kimi Linear, OLMo hybrid), MiniMax's lightning
# attention, Mamba's state space layers (Mamba, Mamba-2, Falcon-Mamba, Falcon-H1, Jamba, Bamba, Granite 4 hybrid,
# Nemotron-H, Zamba), LFM2's short convolutions, RecurrentGemma's recurrence, RWKV, xLSTM.
_TOKEN_STATE_TYPES = {
    **dict.fromkeys(("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next", "kimi_linear",
                     "olmo_hybrid", "minimax"), "linear_attention"),
    **dict.fromkeys(("mamba", "mamba2", "falcon_mamba", "falcon_h1", "jamba", "bamba", "granitemoehybrid",
                     "nemotron_h", "zamba", "zamba2"), "mamba"),
    **dict.fromkeys(("lfm2", "lfm2_moe", "lfm2_vl"), "conv"),
    "recurrent_gemma": "recurrent", "rwkv": "rwkv", "xlstm": "mlstm",
}
# Qwen3.5's config classes make every full_attention_interval-th layer a full-attention one where config.json has no
# layer_types (full_attention_interval: 4 where it says none)
_FULL_ATTENTION_INTERVAL = 4


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder block, as LoRA's target_modules names it."""
    name: str
    d_in: int
    d_out: int
    bias: bool = False
    feeds: str = ""      # which tensor it reads: layers reading the same one share an input
    # where it is: "layer" in every decoder layer; in a mixture's sparse layers "experts" (the routed experts: one
    # per expert) or "shared" (once: a shared expert, its gate); "dense" in a mixture's dense layers (their MLP);
    # in a hybrid decoder's (Qwen3.5) "full" attention layers or its "linear" attention layers alone
    part: str = "layer"

    @property
    def params(self) -> int:
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)


@dataclass(frozen=True)
class LinearAttention:
    """A hybrid decoder's linear attention (Qwen3.5's gated delta net), as config.json sizes it: queries and keys
    key_heads x key_head_dim wide, values value_heads x value_head_dim, through a depthwise convolution conv_kernel
    wide."""
    key_heads: int
    key_head_dim: int
    value_heads: int
    value_head_dim: int
    conv_kernel: int

    @property
    def key_dim(self) -> int:
        return self.key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """The convolution's channels: queries, keys and values projected together (in_proj_qkv)."""
        return 2 * self.key_dim + self.value_dim


@dataclass(frozen=True)
class Architecture:
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    context: int
    norms_per_layer: int
    linears: tuple[Linear, ...]           # per decoder layer
    experts: int = 1                      # MoE: the MLP linears exist this many times
    experts_per_token: int = 1            # MoE: the experts each token is routed to (top-k)
    final_logit_softcap: bool = False
    attention_softcap: bool = False       # attention logits soft-capped (Gemma-2): no flash kernel computes it
    exact: bool = True
    notes: tuple[str, ...] = field(default=())
    attention: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")   # the attention's linears, by name
    sliding_window: int | None = None     # the window of its sliding-window attention layers (sliding_window below)
    dense_layers: int = 0                 # MoE: the decoder layers whose MLP is dense ("dense"), not a mixture
    latent_norms: int = 0                 # DeepSeek's latent attention: the widths of its kv_a (and q_a) norms
    norm_bias: bool = False               # LayerNorms (PhiMoE): every norm has a bias as wide as its weight
    head_bias: bool = False               # the output head has a bias (PhiMoE's lm_head_bias)
    linear_attention_layers: int = 0      # Qwen3.5: the layers whose attention is linear (a gated delta net)
    linear_attention_other: int = 0       # and what each holds beside its linear layers (its convolution, its
                                          # per-head decay and step bias, its gated norm): unquantised
    linear_attention: LinearAttention | None = None   # the shape of those layers' attention
    token_state: str = ""                 # the layer kinds carrying state across tokens outside attention
                                          # (token_state_layers): packed examples would leak into each other

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear(self, name: str) -> Linear:
        return next(lin for lin in self.linears if lin.name == name)

    def copies(self, lin: Linear) -> int:
        """The linear's copies in a layer that has it: one per routed expert, else one."""
        return self.experts if lin.part == "experts" else 1

    @property
    def moe_layers(self) -> int:
        """The decoder layers with a mixture of experts (all of a dense model's: it has no other kind)."""
        return self.layers - self.dense_layers

    @property
    def full_attention_layers(self) -> int:
        """The decoder layers with softmax attention (all but a hybrid decoder's linear-attention ones)."""
        return self.layers - self.linear_attention_layers

    def instances(self, lin: Linear) -> int:
        """How many times the linear is in the whole model: in the layers that have it, with its copies."""
        layers = {"layer": self.layers, "dense": self.dense_layers, "full": self.full_attention_layers,
                  "linear": self.linear_attention_layers}.get(lin.part, self.moe_layers)
        return layers * self.copies(lin)

    @property
    def gated_attention_output(self) -> bool:
        """Qwen3.5's softmax attention multiplies its output by a sigmoid gate (the second half of q_proj's output)
        before o_proj."""
        return self.model_type in _LINEAR_ATTENTION

    @property
    def qk_norm(self) -> bool:
        """Qwen3 (dense and MoE) and Gemma 3 normalise queries and keys per head: an RMSNorm of head_dim on each."""
        return self.model_type in _QK_NORM

    def stacked(self, lin: Linear) -> bool:
        """Whether the linear is a mixture's routed experts: transformers 5 keeps them as one stacked 3-d parameter
        per layer (experts x d_out x d_in), not as linear layers, so bitsandbytes leaves them unquantised and peft
        adapts them as parameters."""
        return self.experts > 1 and lin.part == "experts"

    @property
    def shared_intermediate(self) -> int:
        """The width of a mixture's shared expert: linear layers beside the routed ones ("shared"), 0 where none."""
        return next((lin.d_in for lin in self.linears if lin.part == "shared" and lin.feeds == "shared_down"), 0)

    @property
    def qk_norm_params(self) -> int:
        """The query and key norms' weights in a layer: per head (Qwen3, Gemma 3) or of the whole projections
        (OLMoE)."""
        if self.model_type in _QK_NORM_WHOLE:
            return self.q_dim + self.kv_dim
        return 2 * self.head_dim if self.qk_norm else 0

    @property
    def router_params(self) -> int:
        """A mixture's routers in all: one logit per expert from the hidden state, in every sparse layer. Never
        quantised: transformers 5 keeps most as a module holding one experts x hidden parameter, and bitsandbytes
        converts only modules whose type is nn.Linear itself, not Llama 4's and PhiMoE's routers (its subclasses)."""
        return self.experts * self.hidden * self.moe_layers if self.experts > 1 else 0


@dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int        # input embeddings
    lm_head: int          # 0 when tied to the embeddings
    linear: int           # decoder-layer linear weights: what 4-bit/8-bit quantisation converts
    other: int            # norms and biases: kept unquantised
    experts: int = 0      # a mixture's stacked expert weights (Architecture.stacked): kept unquantised

    @property
    def unquantised(self) -> int:
        return self.embedding + self.lm_head + self.other + self.experts


# A mixture's routed experts as config.json counts them (Mixtral; Qwen-MoE, OLMoE; DeepSeek-V2/V3, GLM-4-MoE-Lite)
EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def _first(cfg: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def _decoder_config(cfg: dict) -> dict:
    """The decoder's config.json mapping (multimodal wrappers keep it in text_config), with its config class's
    defaults for the keys the counts read (_CLASS_DEFAULTS) where config.json leaves them out."""
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    return {**_CLASS_DEFAULTS.get(str(cfg.get("model_type")), {}), **cfg}


def attention_targets(cfg: dict) -> tuple[str, ...]:
    """The attention's linear layers as LoRA's target_modules names them, from a config.json mapping: DeepSeek's
    multi-head latent attention (DeepSeek-V2/V3, GLM-4-MoE-Lite, LongCat: a kv_lora_rank) has no k_proj nor v_proj;
    its queries go through q_a_proj and q_b_proj where it has a q_lora_rank (else q_proj); Phi-3 fuses q, k, v."""
    return tuple(lin.name for lin in _attention(_decoder_config(cfg), 1, 1, 1, 1)[0])


def _attention(cfg: dict, hidden: int, heads: int, kv_heads: int, head_dim: int,
               qkv_bias: bool = False, fused: bool = False) -> tuple[tuple[Linear, ...], int, int]:
    """The attention's linear layers, its per-layer norm widths besides the layer's own (DeepSeek's latent
    attention normalises its compressed keys and values, and queries where they are compressed too) and its
    query/key width per head. DeepSeek's multi-head latent attention (a kv_lora_rank): keys and values come from one
    kv_lora_rank-wide latent (kv_a_proj_with_mqa, which also yields a shared qk_rope_head_dim-wide rotary key), widened
    per head by kv_b_proj to qk_nope_head_dim of key and v_head_dim of value; queries are qk_nope + qk_rope wide a head,
    through a q_lora_rank-wide latent (q_a_proj, q_b_proj) where there is one."""
    bias = bool(cfg.get("attention_bias"))
    if cfg.get("kv_lora_rank"):
        rank, q_rank = int(cfg["kv_lora_rank"]), int(cfg.get("q_lora_rank") or 0)
        nope, rope = int(cfg.get("qk_nope_head_dim") or 128), int(cfg.get("qk_rope_head_dim") or 64)
        value = int(cfg.get("v_head_dim") or 128)
        qk = nope + rope
        query = ((Linear("q_a_proj", hidden, q_rank, bias, "attn"), Linear("q_b_proj", q_rank, heads * qk, False, "q_a"))
                 if q_rank else (Linear("q_proj", hidden, heads * qk, False, "attn"),))
        return ((*query, Linear("kv_a_proj_with_mqa", hidden, rank + rope, bias, "attn"),
                 Linear("kv_b_proj", rank, heads * (nope + value), False, "kv_a"),
                 Linear("o_proj", heads * value, hidden, bias, "o")), rank + q_rank, qk)
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    if cfg.get("model_type") in _LINEAR_ATTENTION:
        return (Linear("q_proj", hidden, 2 * q_dim, bias, "attn", "full"),
                Linear("k_proj", hidden, kv_dim, bias, "attn", "full"),
                Linear("v_proj", hidden, kv_dim, bias, "attn", "full"),
                Linear("o_proj", q_dim, hidden, bias, "o", "full"), *_linear_attention(cfg, hidden)[0]), 0, head_dim
    if fused:
        return ((Linear("qkv_proj", hidden, q_dim + 2 * kv_dim, qkv_bias, "attn"),
                 Linear("o_proj", q_dim, hidden, qkv_bias, "o")), 0, head_dim)
    return ((Linear("q_proj", hidden, q_dim, qkv_bias, "attn"), Linear("k_proj", hidden, kv_dim, qkv_bias, "attn"),
             Linear("v_proj", hidden, kv_dim, qkv_bias, "attn"), Linear("o_proj", q_dim, hidden, bias, "o")), 0, head_dim)


def _linear_attention(cfg: dict, hidden: int) -> tuple[tuple[Linear, ...], int]:
    """A hybrid decoder's linear attention (Qwen3.5's gated delta net): its linear layers and what else it holds.
    Queries and keys linear_num_key_heads x linear_key_head_dim wide, values linear_num_value_heads x
    linear_value_head_dim, projected together (in_proj_qkv) and through a depthwise convolution
    (linear_conv_kernel_dim wide); the output gate (in_proj_z), a step and a decay per value head (in_proj_b,
    in_proj_a, with dt_bias and A_log), a gated norm of a value head's width, out_proj."""
    shape = linear_attention_shape(cfg)
    key, value_heads, value = shape.key_dim, shape.value_heads, shape.value_dim
    linears = (Linear("in_proj_qkv", hidden, 2 * key + value, False, "attn", "linear"),
               Linear("in_proj_z", hidden, value, False, "attn", "linear"),
               Linear("in_proj_b", hidden, value_heads, False, "attn", "linear"),
               Linear("in_proj_a", hidden, value_heads, False, "attn", "linear"),
               Linear("out_proj", value, hidden, False, "linear_o", "linear"))
    other = shape.conv_dim * shape.conv_kernel + 2 * value_heads + shape.value_head_dim
    return linears, other


def linear_attention_shape(cfg: dict) -> LinearAttention:
    """The linear attention's sizes from a hybrid decoder's config.json mapping (its class's defaults applied)."""
    return LinearAttention(key_heads=int(cfg["linear_num_key_heads"]), key_head_dim=int(cfg["linear_key_head_dim"]),
                           value_heads=int(cfg["linear_num_value_heads"]),
                           value_head_dim=int(cfg["linear_value_head_dim"]),
                           conv_kernel=int(cfg["linear_conv_kernel_dim"]))


def _linear_attention_layers(cfg: dict, layers: int) -> int:
    """A hybrid decoder's linear-attention layers: those its layer_types names so, else all but every
    full_attention_interval-th (its config class's rule)."""
    if cfg.get("model_type") not in _LINEAR_ATTENTION:
        return 0
    types = cfg.get("layer_types")
    if isinstance(types, list):
        return sum(1 for kind in types[:layers] if kind == "linear_attention")
    interval = int(cfg.get("full_attention_interval") or _FULL_ATTENTION_INTERVAL)
    return sum(1 for i in range(layers) if (i + 1) % interval)


def token_state_layers(cfg: dict) -> str:
    """The decoder's layer kinds that carry state across tokens outside attention, as config.json's layer_types names
    them ("linear_attention", "conv"; the family's where it lists none), "" where every layer is softmax attention. Read
    from the decoder's mapping (a multimodal checkpoint's text_config, engine.estimate.multimodal): what packing
    (engine.plan.packing_for) must know, since such a layer runs over a packed row's examples as one sequence."""
    cfg = _decoder_config(cfg)
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        return ", ".join(dict.fromkeys(str(k) for k in types if k not in ATTENTION_LAYER_KINDS))
    return _TOKEN_STATE_TYPES.get(str(cfg.get("model_type")), "")


def _mlp(hidden: int, width: int, bias: bool, part: str, fused: bool = False) -> tuple[Linear, ...]:
    """A gated MLP's linear layers (SwiGLU / GeGLU: gate, up, down), Phi-3's gate and up fused."""
    down = "down" if part in ("layer", "experts", "dense") else "shared_down"
    if fused:
        return (Linear("gate_up_proj", hidden, 2 * width, bias, "mlp", part),
                Linear("down_proj", width, hidden, bias, down, part))
    return (Linear("gate_proj", hidden, width, bias, "mlp", part), Linear("up_proj", hidden, width, bias, "mlp", part),
            Linear("down_proj", width, hidden, bias, down, part))


def _dense_layers(cfg: dict, layers: int) -> int:
    """A mixture's decoder layers with a dense MLP instead of experts: DeepSeek's first first_k_dense_replace (or those
    its mlp_layer_types names dense), Qwen-MoE's mlp_only_layers and those decoder_sparse_step skips, those Llama 4's
    moe_layers leaves out (by default all but every interleave_moe_layer_step-th)."""
    types = cfg.get("mlp_layer_types")
    if isinstance(types, list):
        return sum(1 for kind in types[:layers] if kind == "dense")
    if isinstance(cfg.get("moe_layers"), list):
        return layers - len({i for i in cfg["moe_layers"] if isinstance(i, int) and 0 <= i < layers})
    if cfg.get("interleave_moe_layer_step"):
        return layers - len(range(int(cfg["interleave_moe_layer_step"]) - 1, layers, int(cfg["interleave_moe_layer_step"])))
    if cfg.get("first_k_dense_replace") is not None:
        return min(int(cfg["first_k_dense_replace"]), layers)
    only = cfg.get("mlp_only_layers")
    only = {i for i in only if isinstance(i, int)} if isinstance(only, list) else set()
    step = int(cfg.get("decoder_sparse_step") or 1)
    return sum(1 for i in range(layers) if i in only or (i + 1) % step)


def sliding_window(cfg: Mapping[str, Any]) -> int | None:
    """The window of a model's sliding-window attention layers (Mistral's and Phi-3's every layer, Gemma-2's and
    Gemma-3's sliding ones), None where no layer slides (Qwen2 names a window it does not use: its layer_types)."""
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types")
    if not window or (types is not None and "sliding_attention" not in types):
        return None
    return int(window)


def architecture(cfg: dict) -> Architecture:
    """Layer shapes of a decoder-only model from its config.json mapping (a multimodal checkpoint's text decoder:
    the one the trainer loads, engine.estimate.multimodal)."""
    from engine.estimate.multimodal import decoder_alone_note

    notes: list[str] = [note] if (note := decoder_alone_note(cfg)) else []
    cfg = _decoder_config(cfg)
    model_type = str(cfg.get("model_type", "unknown"))
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    vocab = _first(cfg, "vocab_size")
    missing = [k for k, v in (("hidden_size", hidden), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("vocab_size", vocab)) if not v]
    if missing:
        raise ModelError(f"config.json has no {', '.join(missing)}; is this a decoder language model?")
    # a mixture's config may name only its experts' width (Qwen3.5-MoE's class has no intermediate_size)
    intermediate = _first(cfg, "intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size")
    if not intermediate:
        intermediate = 4 * hidden
        notes.append("intermediate_size missing: assumed 4 x hidden_size")
    kv_heads = _first(cfg, "num_key_value_heads", default=heads)
    head_dim = _first(cfg, "head_dim", default=hidden // heads)
    family = _FAMILIES.get(model_type)
    exact = family is not None
    if family is None:
        notes.append(f"model_type {model_type!r} is not one we count exactly: read as a Llama-like decoder")
        family = (2, bool(cfg.get("attention_bias")), False)
    norms, qkv_bias, fused = family
    qkv_bias = qkv_bias or bool(cfg.get("attention_bias"))
    mlp_bias = bool(cfg.get("mlp_bias"))
    attention, latent_norms, qk_head_dim = _attention(cfg, hidden, heads, kv_heads, head_dim, qkv_bias, fused)
    if latent_norms:     # latent attention: every head has its own keys and values, qk_head_dim wide (values less)
        kv_heads, head_dim = heads, qk_head_dim
    experts = int(_first(cfg, *EXPERTS_KEYS, default=1) or 1)
    experts_per_token, dense_layers = 1, 0
    shared: tuple[Linear, ...] = ()
    if experts > 1:
        # an expert's width; a dense layer's: Llama 4's intermediate_size_mlp
        dense_width = cfg.get("intermediate_size_mlp") or intermediate
        intermediate = cfg.get("moe_intermediate_size") or intermediate
        experts_per_token = min(experts, int(_first(cfg, "num_experts_per_tok", default=2) or 2))
        # the shared expert: Qwen2-MoE's shared_expert_intermediate_size wide (and gated: shared_expert_gate);
        # DeepSeek's n_shared_experts experts, one MLP as wide as they are together; Llama 4's one, always
        width = int(cfg.get("shared_expert_intermediate_size") or 0) or \
            int(_first(cfg, "n_shared_experts", "num_shared_experts", default=0) or 0) * intermediate or \
            (intermediate if model_type in _ONE_SHARED_EXPERT else 0)
        if width:
            shared = _mlp(hidden, width, mlp_bias, "shared")
            if cfg.get("shared_expert_intermediate_size"):
                shared += (Linear("shared_expert_gate", hidden, 1, False, "mlp", "shared"),)
        dense_layers = _dense_layers(cfg, layers)
        notes.append(f"mixture of {experts} experts, {experts_per_token} a token"
                     + (f", a shared expert {width:,} wide" if width else "")
                     + (f"; {dense_layers} of its {layers} layers dense" if dense_layers else ""))
        linears = (*attention, *_mlp(hidden, intermediate, mlp_bias, "experts", fused), *shared,
                   *(_mlp(hidden, dense_width, mlp_bias, "dense", fused) if dense_layers else ()))
    else:
        linears = (*attention, *_mlp(hidden, intermediate, mlp_bias, "layer", fused))
    tied = bool(cfg.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT))
    linear_layers = _linear_attention_layers(cfg, layers)
    if linear_layers:
        notes.append(f"{linear_layers} of its {layers} layers linear attention (a gated delta net): their "
                     "activations as transformers' PyTorch path saves them (measured on the CPU; the fused "
                     "flash-linear-attention kernels not measured)")
    context = int(_first(cfg, "max_position_embeddings", "n_positions", "max_sequence_length", default=0) or 0)
    return Architecture(model_type=model_type, hidden=hidden, intermediate=intermediate, layers=layers, heads=heads,
                        kv_heads=kv_heads, head_dim=head_dim, vocab=vocab, tied=tied, context=context,
                        norms_per_layer=norms, linears=linears, experts=experts, experts_per_token=experts_per_token,
                        final_logit_softcap=bool(cfg.get("final_logit_softcapping")),
                        # Gemma-2's config class soft-caps at 50 where config.json does not say
                        attention_softcap=bool(cfg.get("attn_logit_softcapping", 50.0 if model_type == "gemma2"
                                                       else None)), exact=exact,
                        notes=tuple(notes), attention=tuple(lin.name for lin in attention),
                        sliding_window=sliding_window(cfg), dense_layers=dense_layers,
                        latent_norms=latent_norms, norm_bias=model_type in _LAYER_NORMS,
                        head_bias=bool(cfg.get("lm_head_bias")), linear_attention_layers=linear_layers,
                        linear_attention_other=_linear_attention(cfg, hidden)[1] if linear_layers else 0,
                        linear_attention=linear_attention_shape(cfg) if linear_layers else None,
                        token_state=token_state_layers(cfg))


def count_params(arch: Architecture) -> ParamCounts:
    linear = sum(lin.d_in * lin.d_out * arch.instances(lin) for lin in arch.linears)
    bias = sum(lin.d_out * arch.instances(lin) for lin in arch.linears if lin.bias)
    experts = sum(lin.d_in * lin.d_out * arch.instances(lin) for lin in arch.linears if arch.stacked(lin))
    norms = arch.layers * (arch.norms_per_layer * arch.hidden + arch.latent_norms) + arch.hidden    # the final norm
    norms *= 2 if arch.norm_bias else 1
    # the query and key norms are the softmax attention's: a hybrid decoder's linear attention has its own others
    norms += arch.full_attention_layers * arch.qk_norm_params + arch.linear_attention_layers * arch.linear_attention_other
    embedding = arch.vocab * arch.hidden
    lm_head = 0 if arch.tied else embedding
    linear -= experts
    other = bias + norms + arch.router_params + (arch.vocab if arch.head_bias else 0)
    return ParamCounts(total=embedding + lm_head + linear + other + experts, embedding=embedding, lm_head=lm_head,
                       linear=linear, other=other, experts=experts)


# Where peft (0.21, on transformers 5) adapts a mixture's routed experts, which transformers 5 keeps as stacked 3-d
# parameters, not linear layers: the model types whose experts peft maps (transformers' _MODEL_TO_CONVERSION_PATTERN
# into peft's _MOE_TARGET_MODULE_MAPPING, peft.utils.transformers_weight_conversion), each with the target_modules
# names it maps onto the stacks (and the router's weight). all-linear reaches them there, as parameters (peft's
# ParamWrapper), which LoRA adapts without dropout: peft refuses any other lora_dropout. Elsewhere (Qwen2-MoE itself,
# PhiMoE, GraniteMoE, gpt-oss) the stacks are no linear layers: all-linear leaves them frozen and adapts what is
# linear (attention, a shared expert), dropout and all. Pinned against peft's tables and a tiny model of each kind
# built by the trainer (tests/test_expert_dropout.py).
_MIXTRAL_NAMES = ("gate", "w1", "w2", "w3")
_QWEN2_MOE_NAMES = ("gate", "gate_proj", "up_proj", "down_proj")
EXPERT_STACK_NAMES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("mixtral", "minimax", "minimax_m2"), _MIXTRAL_NAMES),
    **dict.fromkeys(("afmoe", "beam", "cohere2_moe", "deepseek_v2", "deepseek_v3", "deepseek_v32", "dots1",
                     "ernie4_5_moe", "exaone_moe", "flex_olmo", "glm4_moe", "glm4_moe_lite", "glm4v_moe",
                     "glm_moe_dsa", "hunyuan_v1_moe", "longcat_flash", "mellum", "olmoe", "qwen3_moe", "qwen3_next",
                     "qwen3_omni_moe", "qwen3_omni_moe_text", "qwen3_omni_moe_thinker", "sarvam_mla", "solar_open"),
                    _QWEN2_MOE_NAMES),
}


def adapts_expert_stacks(model_type: str, target_modules: str | list[str]) -> bool:
    """Whether LoRA with these target_modules adapts the model's stacked experts (as parameters, without dropout)."""
    names = EXPERT_STACK_NAMES.get(model_type, ())
    if target_modules == "all-linear":
        return bool(names)
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return any(t in names for t in targets)


# A mixture's router, by its name in the module tree (Mixtral's, Qwen-MoE's, OLMoE's, DeepSeek's gate; Llama 4's,
# PhiMoE's, GraniteMoE's router), and whatever it holds (GraniteMoE's router.layer): never a LoRA target. Adapting it
# changes which experts each token goes to (peft's recipes leave it out), and Llama 4's returns a tuple, which peft's
# LoRA layer cannot take (the first forward stopped). peft's own all-linear adapts it (a linear router as any linear
# layer, the gate it maps with the stacked experts): the trainer gives peft all-linear's names less the routers
# (engine.model.peft_target_modules), and refuses a router named. Qwen2-MoE's and Qwen3.5-MoE's shared_expert_gate
# (a Linear(hidden, 1): how much of the shared expert each token takes) is a gate of the same kind.
ROUTER_NAMES = ("router", "gate", "shared_expert_gate")
# The mixtures whose every module name is known here (attention, router, experts): a name they lack is refused
# before the model loads, as the trainer refuses it once loaded (pinned by tiny models of each: test_expert_dropout)
NAMED_MIXTURES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "phimoe", "granitemoe", "deepseek_v2", "deepseek_v3")


def router_problem(model_type: str, target_modules: str | list[str]) -> tuple[str, str] | None:
    """(problem, fix) where target_modules names a mixture's router (ROUTER_NAMES), else None: the one rule the
    estimate (lora_targets, before loading) and the trainer (engine.model.check_target_modules) refuse by."""
    names = [] if target_modules == "all-linear" else \
        [target_modules] if isinstance(target_modules, str) else list(target_modules)
    routers = [n for n in names if n in ROUTER_NAMES]
    if not routers:
        return None
    quoted = ", ".join(repr(n) for n in routers)
    what = " and ".join(dict.fromkeys("shared expert's gate" if n == "shared_expert_gate" else "router"
                                      for n in routers))
    changes = ("how much of the shared expert each token takes" if what == "shared expert's gate" else
               "which experts each token goes to")
    return (f"lora.target_modules: {quoted} is this {model_type} model's {what}, which LoRA leaves frozen: adapting "
            f"it changes {changes}",
            f"leave {quoted} out of lora.target_modules (all-linear adapts every linear layer but the routers and the "
            "output head)")


def _names(attention: tuple[str, ...]) -> str:
    return ", ".join(attention)


def expert_dropout_fix(attention: tuple[str, ...]) -> str:
    """The ways out, in the config's words (a refusal's fix); attention: the model's attention linears
    (Architecture.attention, attention_targets): DeepSeek's have no q_proj, k_proj nor v_proj."""
    return f"set lora.dropout: 0, or lora.target_modules: [{_names(attention)}] (attention only)"


def expert_dropout_finding_fix(attention: tuple[str, ...]) -> str:
    """The ways out as the wizard applies one (a finding's "Set key to value")."""
    return ("Set lora.dropout to 0 (the experts train without it), or lora.target_modules to the attention "
            f"projections only ({_names(attention)}).")


def expert_dropout_problem(model_type: str, lora: Any, *, adapted: bool | None = None) -> str | None:
    """The one rule of LoRA dropout on a mixture of experts, from the model's config.json (its model_type) and the
    lora settings: the problem, naming lora.dropout, or None where the adapters can be built. `lorapilot estimate`,
    `lorapilot train` before anything loads, the wizard's pre-flight checklist and the trainer's own late check (the
    backstop) all ask here. adapted: whether peft adapts the stacks (default: adapts_expert_stacks says); the
    trainer passes True where peft refused a model type the table does not know yet."""
    if adapted is None:
        adapted = adapts_expert_stacks(model_type, lora.target_modules)
    if not lora.dropout or not adapted:
        return None
    names = EXPERT_STACK_NAMES.get(model_type, ())
    how = ("lora.target_modules: all-linear" if lora.target_modules == "all-linear" or not names else
           "lora.target_modules " + ", ".join(t for t in lora.target_modules if t in names))
    return (f"lora.dropout: {lora.dropout:g} cannot apply to this {model_type + ' ' if model_type else ''}model's "
            f"experts, which {how} reaches: they are stacked weights, which LoRA adapts without dropout")


def check_expert_dropout(arch: Architecture, lora: Any) -> None:
    """expert_dropout_problem as the refusal a verb raises (exit 2) before any model loads."""
    problem = expert_dropout_problem(arch.model_type, lora)
    if problem:
        raise ConfigError(problem, fix=expert_dropout_fix(arch.attention))


# Mixtral's experts as peft names them (its v4 modules: w1 gate, w3 up, w2 down), onto the stacks counted here
_MIXTRAL_EXPERTS = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
# The names fused into one stack (gate_up_proj): peft adapts both or refuses (after the model has loaded)
_FUSED = (("gate_proj", "up_proj"), ("w1", "w3"))


def _check_expert_names(arch: Architecture, names: list[str]) -> None:
    """Half of a fused pair of a mixture's stacks, refused before the model loads where peft would refuse it after
    (a ValueError traceback): gate_proj and up_proj (Mixtral's w1 and w3) are one stacked weight."""
    mapped = EXPERT_STACK_NAMES.get(arch.model_type, ())
    for pair in _FUSED:
        named = [n for n in pair if n in names]
        if set(pair) <= set(mapped) and len(named) == 1:
            other = next(n for n in pair if n not in named)
            raise ConfigError(f"lora.target_modules: {named[0]} without {other}: on this {arch.model_type} model's "
                              "experts they are one stacked weight, adapted together or not at all",
                              fix=f"add {other} to lora.target_modules, or leave out {named[0]}")


def reached(arch: Architecture, lin: Linear) -> bool:
    """Whether LoRA can adapt the layer (by all-linear, or by its name): a mixture's stacked experts only where peft
    maps them (EXPERT_STACK_NAMES); a linear layer unless peft takes its name for the stacks': it turns a target
    gate_proj, up_proj or down_proj into the stacks' parameters on those model types, so DeepSeek's shared expert and
    dense layers (and Qwen3-MoE's mlp_only_layers) stay frozen under any target_modules (peft 0.21). Never a router
    (ROUTER_NAMES: Qwen2-MoE's shared_expert_gate is a linear layer here)."""
    mapped = EXPERT_STACK_NAMES.get(arch.model_type, ())
    return bool(mapped) if arch.stacked(lin) else lin.name not in mapped and lin.name not in ROUTER_NAMES


def target_names(arch: Architecture) -> dict[str, Linear]:
    """The target_modules names that reach a layer of this model, each with a layer counted for it. A mixture's
    routed experts are stacked weights, no linear layers: peft reaches them by the names it maps for the model type
    (EXPERT_STACK_NAMES: Mixtral's w1, w2, w3; gate_proj, up_proj, down_proj elsewhere), and by no name where it maps
    none (PhiMoE, GraniteMoE, Qwen2-MoE): there only a shared expert's linears (Qwen2-MoE's) carry those names."""
    mixtral = EXPERT_STACK_NAMES.get(arch.model_type) == _MIXTRAL_NAMES
    known: dict[str, Linear] = {}
    for lin in arch.linears:
        if reached(arch, lin) and not (mixtral and arch.stacked(lin)):
            known.setdefault(lin.name, lin)
    if mixtral:
        known |= {alias: arch.linear(name) for alias, name in _MIXTRAL_EXPERTS.items()}
    return known


def lora_targets(arch: Architecture, target_modules: str | list[str]) -> list[Linear]:
    """The decoder linears LoRA adapts (a name may reach several: Qwen2-MoE's gate_proj is its shared expert's and
    its dense layers'); unknown names are an error where the family is known (or the mixture's names
    are: NAMED_MIXTURES), and so are the names of a mixture's experts where no name reaches them. A mixture's
    stacked experts count only where peft adapts them (adapts_expert_stacks): Qwen2-MoE's all-linear leaves them
    frozen. A mixture's router never (ROUTER_NAMES): named, it is refused (router_problem)."""
    stacks = adapts_expert_stacks(arch.model_type, target_modules)
    if target_modules == "all-linear":
        return [lin for lin in arch.linears if reached(arch, lin)]
    if arch.experts > 1 and (problem := router_problem(arch.model_type, target_modules)):
        raise ConfigError(problem[0], fix=problem[1])
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    _check_expert_names(arch, names)
    known = target_names(arch)
    unknown = [n for n in names if n not in known]
    # the experts' names where no name reaches the experts (the trainer refuses them once the model has loaded)
    unreached = [n for n in unknown if n in {*_MIXTRAL_EXPERTS, *_MIXTRAL_EXPERTS.values()}] if arch.experts > 1 \
        else []
    if unknown and (arch.exact or arch.model_type in NAMED_MIXTURES or unreached):
        why = f": its experts are stacked weights, which LoRA {how}" if unreached and (how := _experts_named(arch)) \
            else ""
        raise ConfigError(f"lora.target_modules: {', '.join(repr(n) for n in unknown)} not in a "
                          f"{arch.model_type} model{why}", fix=f"valid names: {', '.join(known)} (or all-linear)")
    out: list[Linear] = []
    for name in dict.fromkeys(n for n in names if n in known):
        layer = known[name].name          # Mixtral's w1, w2, w3: its stacks' names here
        out += [lin for lin in arch.linears if lin.name == layer and reached(arch, lin)
                and (stacks or not arch.stacked(lin))]
    return out


def _experts_named(arch: Architecture) -> str:
    """How target_modules names a mixture's experts, for a refusal of other names."""
    if EXPERT_STACK_NAMES.get(arch.model_type) == _MIXTRAL_NAMES:
        return "names w1 and w3 (gate, up) and w2 (down)"
    if not EXPERT_STACK_NAMES.get(arch.model_type):
        return f"does not adapt on a {arch.model_type} model (all-linear leaves them frozen)"
    return ""


def lora_params(arch: Architecture, targets: list[Linear], r: int) -> int:
    """Trainable adapter parameters: A (r x d_in) plus B (d_out x r) per adapted layer. A mixture's stacked experts (peft 0.21): r per expert, the fused gate_up
    stack's B twice as wide (twice the rank)."""
    def adapter(lin: Linear) -> int:
        wide = 2 if arch.stacked(lin) and lin.name in ("gate_proj", "up_proj") else 1
        return r * (lin.d_in + wide * lin.d_out)

    return sum(adapter(lin) * arch.instances(lin) for lin in targets)
