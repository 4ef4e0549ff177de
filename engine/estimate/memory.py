"""GPU memory during QLoRA/LoRA training, component by component.

The numbers follow the code path lorapilot really runs (engine/model.py):
transformers loads the base through bitsandbytes, peft's
prepare_model_for_kbit_training upcasts every unquantised parameter to fp32
(under bf16 the engine casts them back, so the residual stream is bf16), peft keeps adapters in fp32 (autocast_adapter_dtype), training runs under
autocast, and Hugging Face's gradient checkpointing wraps each decoder layer.
Each saved-for-backward tensor below was traced from that code (see the
comments); the totals are what torch.cuda.max_memory_allocated reports, plus
what nvidia-smi adds on top. On the CPU (no GPU: fp32, plain PyTorch kernels) there
is no CUDA context and no caching allocator: the total is the tensors' peak in RAM.

Everything is bytes per token unless the name says otherwise, so the
activation and logit terms scale with the tokens in a micro-batch (packed or
not) rather than with micro_batch_size x max_seq_length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.estimate.params import Architecture, Linear, ParamCounts
from engine.settings import mem_text

if TYPE_CHECKING:   # engine.plan imports this module (plan_fits) when it plans: types only here
    from engine.config import Config
    from engine.estimate.model_config import ModelInfo
    from engine.plan import RunPlan

GIB = 1024 ** 3

# bitsandbytes NF4 with double quantisation: 4-bit codes, one 8-bit absmax per
# 64-weight block, and one fp32 constant per 256 of those absmax values.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# prepare_model_for_kbit_training casts every fp16/bf16 parameter that is not
# quantised (embeddings, lm_head, norms, biases) to fp32.
KBIT_UNQUANTISED_BYTES = 4
# bitsandbytes pages an optimizer state buffer (unified memory, outside
# PyTorch's allocator) only when the parameter has at least this many elements.
BNB_PAGED_MIN_NUMEL = 100_000
# bitsandbytes keeps 8-bit states only for tensors this large; smaller ones stay fp32.
BNB_8BIT_MIN_NUMEL = 4096
BNB_8BIT_BLOCK = 256
# What nvidia-smi shows beyond PyTorch's allocations: the CUDA context (kernels
# of torch, bitsandbytes and cuBLAS workspaces) and the caching allocator's
# reserved-but-free blocks, which grow with the peak. Calibrate in benchmarks/.
CUDA_CONTEXT_GIB = 0.5

# The estimate has an error, and a run that touches 100 % dies: "fits" means
# under this fraction of the card, and auto-fit aims below it.
FIT_FRACTION = 0.90
# Offloaded activations still on the GPU at the peak: the layer inputs whose copies to the host are in
# flight (TRL keeps up to 5 in its forward stash) and the ones fetched back ahead of backward.
OFFLOAD_RESIDENT_LAYERS = 6
ALLOCATOR_SLACK_FRACTION = 0.10
# Architectures whose layers alternate full and sliding-window attention: transformers builds a mask for each type.
SLIDING_AND_FULL_LAYERS = ("gemma2", "gemma3_text")
# Compiled decoder layers (RunPlan.compile_layers) peak higher than eager ones: inductor's fused kernels keep their
# own buffers while a layer runs backward. Modelled as this many MLP-wide tensors (intermediate_size per token, in the
# compute dtype) over the largest micro-batch: 0.36 GiB on Llama-2-7B and 0.47 GiB on Llama-3-8B at 8,786 tokens.
# Fitted to `lorapilot train` on an H200 (benchmarks/results/user_path-t525-h200-2026-12-03, transformers 5.25; the
# same peaks on 5.17 in levers-user_path-h200-2026-12-03), compiled minus eager peak allocated at 8,786 tokens:
# Llama-2-7B +0.34 GiB (8.17 -> 8.51) with LoRA dropout, +0.49 (7.23 -> 7.72) without; Llama-3-8B +0.50
# (10.00 -> 10.50). One term for both dropout settings, between them; the peaks are logged to 0.1 GiB in the tables.
COMPILED_LAYER_MLP_TENSORS = 2
# Compiled layers that dequantise the NF4 weights inside their graph (RunPlan.graph_dequant) peak higher than with
# bitsandbytes' ops, which hold one dequantised weight at a time. Why is not known yet: the AOT graphs recompute
# each weight just before its matmul, so it is inductor's doing on the GPU (benchmarks/memory_peak.py, next lease).
# Modelled as this many of the largest quantised weight in the compute dtype, in place of the one-at-a-time buffer. Fitted to `lorapilot train` on an H200 (benchmarks/results/
# user_path-s13-h200-2026-12-04): Llama-2-7B 8.93 GiB peak allocated at 8,786 tokens against 8.63 without (the
# bitsandbytes path, session 12), +0.30 GiB = 3.6 weights of 11,008 x 4,096 over the one buffer.
GRAPH_DEQUANT_WEIGHTS = 4.5


@dataclass(frozen=True)
class Component:
    name: str
    gib: float
    note: str = ""
    in_peak: bool = True     # False: measured at another moment than the peak, not added to it
    added: bool = False      # outside the peak but added on top for nvidia-smi (context, slack, paged states)

    @property
    def mark(self) -> str:
        """How every listing of the estimate marks it: ' ' in the peak, '+' added on top, '~' another moment."""
        return " " if self.in_peak else "+" if self.added else "~"

    def to_dict(self) -> dict:
        return {"name": self.name, "gib": round(self.gib, 3), "note": self.note, "in_peak": self.in_peak}


@dataclass(frozen=True)
class TrainingShape:
    """The config, reduced to what memory depends on."""
    quantization: str            # nf4 | int8 | none
    precision: str               # the plan's compute dtype: bf16 | fp16 (autocast) | fp32
    targets: tuple[Linear, ...]
    r: int
    dropout: float
    optimizer: str
    gradient_checkpointing: bool
    tokens: int                  # per micro-batch
    fused_loss: bool             # Liger applied: fused linear-cross-entropy, and its SwiGLU, RMSNorm and RoPE
    kbit_upcast: bool = True     # unquantised weights (and so the residual stream) fp32 after kbit preparation;
                                 # the engine casts them back to bf16 under bf16 (engine/train/speed.py)
    offload: bool = False        # lean: checkpointed layer inputs offloaded to host memory
    offload_layers: int = 0      # fast compiled: the first this many layers' inputs offloaded (the plan's)
    mask_free_dropout: bool = False  # LoRA dropout saves no mask nor dropped copy (the plan's): as without dropout
    mask_hash32: bool = False    # ... its eager mask hashed in int32 words, not int64 (the plan's)
    shards: int = 1              # FSDP over N GPUs: weights, adapters, gradients and optimizer states split N ways
    eval_tokens: int = 0         # the evaluation micro-batch's tokens (no gradients; 0: no evaluation)
    compile_layers: bool = False  # the decoder layers through torch.compile (the plan's): inductor's buffers on top
    graph_dequant: bool = False  # compiled layers dequantise the NF4 weights in their graph (the plan's)
    device: str = "cuda"         # cuda | cpu (the plan's): only a GPU adds a CUDA context and allocator slack
    attention: str = "sdpa"      # the plan's attention implementation (transformers' name)
    packed: bool = False         # the plan packs examples into one row per micro-batch (position_ids restart)
    row_tokens: int = 0          # the longest row's tokens: the packed micro-batch, or one padded example (0: tokens)

    @property
    def compute_bytes(self) -> int:
        return dtype_bytes(self.precision)


@dataclass(frozen=True)
class Memory:
    components: list[Component]
    peak_allocated_gib: float
    device_total_gib: float
    load_peak_gib: float
    context_gib: float                   # the CUDA context the device holds before any tensor (0 on the CPU)


def dtype_bytes(precision: str) -> int:
    """Bytes per element of a compute dtype: 2 under bf16/fp16 autocast, 4 in fp32."""
    return 4 if precision == "fp32" else 2


def _stream_bytes(shape: TrainingShape) -> int:
    # With fp32 embeddings and norms (kbit preparation) the residual stream is
    # fp32, and bitsandbytes casts each 4-bit layer's output back to its input dtype.
    return 4 if shape.quantization != "none" and shape.kbit_upcast else shape.compute_bytes


def _unquantised_bytes(shape: TrainingShape) -> int:
    return KBIT_UNQUANTISED_BYTES if shape.kbit_upcast else shape.compute_bytes


def base_weight_bytes(arch: Architecture, params: ParamCounts, shape: TrainingShape) -> tuple[float, float]:
    """(linear layers as stored, everything else) in bytes."""
    if shape.quantization == "nf4":
        return params.linear * NF4_BYTES_PER_PARAM, params.unquantised * _unquantised_bytes(shape)
    if shape.quantization == "int8":
        # int8 weights plus one fp32 scale per output row (LLM.int8 SCB).
        rows = sum(lin.d_out * arch.instances(lin) for lin in arch.linears if not arch.stacked(lin))
        return params.linear + 4 * rows, params.unquantised * _unquantised_bytes(shape)
    weight_bytes = 2 if shape.compute_bytes == 2 else 4
    return params.linear * weight_bytes, params.unquantised * weight_bytes


def _lora_tensors(arch: Architecture, shape: TrainingShape) -> list[int]:
    """Element counts of every adapter tensor (A: r x d_in, B: d_out x r). A mixture's stacked experts: one A and one B per stack and layer, r per expert; peft adapts the fused
    gate_up stack as one, with twice the rank: one A of 2r per expert, one B twice as wide (measured with peft 0.21)."""
    out = []
    for lin in shape.targets:
        if arch.stacked(lin):
            if lin.name == "up_proj":        # gate_up: one pair, counted at gate_proj (both are adapted or neither)
                continue
            wide = 2 if lin.name == "gate_proj" else 1
            out += [wide * arch.experts * shape.r * lin.d_in] * arch.moe_layers
            out += [wide * arch.experts * shape.r * lin.d_out * wide] * arch.moe_layers
            continue
        n = arch.instances(lin)
        out += [shape.r * lin.d_in] * n + [shape.r * lin.d_out] * n
    return out


def _adapted_stacks(arch: Architecture, shape: TrainingShape) -> list[Linear]:
    """The targets that are a mixture's stacked experts (peft merges each adapter into its stack for the forward)."""
    return [lin for lin in shape.targets if arch.stacked(lin)]


def optimizer_bytes(arch: Architecture, shape: TrainingShape) -> tuple[float, float]:
    """(states in PyTorch's allocator, states in paged unified memory) in bytes."""
    eight_bit = shape.optimizer in ("adamw_8bit", "paged_adamw_8bit")
    paged = shape.optimizer.startswith("paged_")
    allocated = paged_bytes = 0.0
    for numel in _lora_tensors(arch, shape):
        if eight_bit and numel >= BNB_8BIT_MIN_NUMEL:
            size = 2 * (numel + 4 * -(-numel // BNB_8BIT_BLOCK))    # two uint8 states + fp32 absmax per block
        else:
            size = 2 * 4 * numel                                     # exp_avg and exp_avg_sq in fp32
        if paged and numel >= BNB_PAGED_MIN_NUMEL:
            paged_bytes += size
        else:
            allocated += size
    return allocated, paged_bytes


FULL_ATTENTION = "full"       # a decoder layer with softmax attention: every layer but a hybrid decoder's others
LINEAR_ATTENTION = "linear"   # a hybrid decoder's (Qwen3.5) linear-attention layer: a gated delta net


def layer_kinds(arch: Architecture) -> dict[str, int]:
    """The decoder's layers by kind (FULL_ATTENTION, LINEAR_ATTENTION): how many of each it has (none left out)."""
    kinds = {FULL_ATTENTION: arch.full_attention_layers, LINEAR_ATTENTION: arch.linear_attention_layers}
    return {kind: n for kind, n in kinds.items() if n}


def layer_activation_bytes(arch: Architecture, shape: TrainingShape, kind: str = FULL_ATTENTION) -> float:
    """Bytes one decoder layer of this kind (layer_kinds) saves for backward, per token, without checkpointing."""
    c, s = shape.compute_bytes, _stream_bytes(shape)
    h, i = arch.hidden, arch.intermediate
    # RMSNorm upcasts its input to fp32 and keeps it (pow and mul save it).
    # Liger's RMSNorm keeps its input as it comes (the stream dtype) plus an
    # fp32 rstd per row: half the bytes once the stream is bf16 (measured).
    norms = arch.norms_per_layer * _norm_saved_bytes(shape, h)
    # The MLP keeps the gate output (activation input), the activation output
    # and the up output; the frozen down_proj does not keep its input. Liger's
    # SwiGLU keeps only the gate and up outputs and recomputes SiLU in backward.
    mlp = (2 if shape.fused_loss else 3) * s * i
    if arch.experts > 1:
        # a shared expert (Qwen2-MoE, DeepSeek) is a dense MLP every token goes through beside the routed ones: it
        # keeps what a dense MLP keeps, at its own width (not measured)
        mlp = _experts_activation_bytes(arch, shape) + 3 * s * arch.shared_intermediate
        if any(lin.name == "shared_expert_gate" for lin in arch.linears):
            # Qwen-MoE's sigmoid(shared_expert_gate(x)) x the shared expert's output keeps both, in the stream's
            # dtype (measured on the CPU: Qwen3.5-MoE, tests/test_estimate_linear_attention.py)
            mlp += s * (1 + h)
    if kind == LINEAR_ATTENTION:
        return norms + gated_delta_net_bytes(arch, shape) + mlp + lora_activation_bytes(arch, shape, kind)
    if arch.qk_norm:     # Qwen3's RMSNorm of each query and key head (its fp32 input and reciprocal RMS per head)
        norms += (arch.heads + arch.kv_heads) * _norm_saved_bytes(shape, arch.head_dim)
        if arch.gated_attention_output and s == 4 and not shape.fused_loss:
            # Qwen3.5's query heads are a view of q_proj's output, which is twice as wide (the gate beside them):
            # where the norm's fp32 upcast is a no-op it keeps that whole output (measured on the CPU)
            norms += 4 * arch.q_dim
    # Attention keeps q, k, v and its output in the compute dtype, plus the fp32
    # log-sum-exp per head. k and v stay at their grouped (GQA) width where the
    # kernel takes them so: flex attention (packed rows on a GPU) when the head
    # count is a power of two, SDPA when no mask is needed. Flex attention with
    # another head count (Qwen2.5: 12, 28, 40 heads) repeats them to every head
    # first, as SDPA does beside a padding mask. Measured on an H100
    # (benchmarks/results/vram_calibration-*): unpadded rows keep the grouped width.
    # Varlen flash attention (packed rows on Ampere and newer since 2026-12-04)
    # keeps the grouped width at any head count (enable_gqa): for Qwen2.5 this
    # counts more than it keeps, on the safe side; the peaks of Llama-2-7B matched
    # flex's (8.9 GiB compiled, 7.4 GiB eager, H200).
    # The CPU's SDPA beside a packed row's mask: transformers repeats k and v to every head first (it passes
    # enable_gqa only without a mask), and the kernel keeps the repeated ones (measured on the CPU).
    # Eager attention (Gemma-2's soft-capped logits) keeps q and k and v repeated to every head, but neither its
    # output (o_proj's adapter keeps that, where there is one) nor a log-sum-exp; its tokens x tokens scores are
    # counted apart (eager_scores_bytes). Measured on the CPU (tests/test_gemma2_attention.py).
    eager = shape.attention == "eager"
    kv = arch.kv_dim if _is_power_of_two(arch.heads) and not _sdpa_packed_mask(shape) and not eager else arch.q_dim
    attention = c * ((1 if eager else 2) * arch.q_dim + 2 * kv) + (0 if eager else 4 * arch.heads)
    if arch.gated_attention_output:
        # Qwen3.5: output * sigmoid(gate) keeps the sigmoid's output and the attention's output (a tensor of its
        # own, not the kernel's saved one, on the CPU's SDPA); o_proj's input is their product (lora_activation_bytes)
        attention += 2 * c * arch.q_dim
    return norms + attention + mlp + lora_activation_bytes(arch, shape, kind)


# transformers' PyTorch gated delta rule (torch_chunk_gated_delta_rule) runs the recurrence in chunks of this many
# tokens, each row padded to a multiple of it; flash-linear-attention's kernels chunk by 64 too
GATED_DELTA_CHUNK_TOKENS = 64


def gated_delta_net_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """Per token, what a linear-attention layer's gated delta net (Qwen3.5) keeps for backward, its adapters apart,
    as transformers' PyTorch path runs it: where neither flash-linear-attention nor causal-conv1d is installed (the
    CPU, and a GPU without them). Their fused kernels keep other tensors: not measured. Read from the code and
    measured on the CPU to the byte (tests/test_estimate_linear_attention.py), rows a multiple of the chunk long
    (linear_attention_padding_bytes adds the rest). With Hv value heads, queries and keys are repeated to Hv heads
    of key_head_dim (dk), values are value_head_dim (dv) wide, C is the chunk:
    - the convolution's input and the SiLU's input (its output), conv_dim wide, in the compute dtype;
    - per value head: the step (sigmoid of in_proj_b, the stream's dtype) and eight fp32 scalars (the decay's softplus
      input, beta, the query and key L2 norms, the decay's three exponentials, the gated norm's reciprocal RMS);
    - Hv x dk in fp32, six: the query and key, the padded key, beta x key, the scaled query, the UT-solved keys; and
      the matmuls' operands: four in the compute dtype for the two chunk matrices, and in the chunk loop the decayed
      query and key (fp32; under autocast three compute-dtype casts: the decayed query, key and the solved keys);
    - Hv x dv: the padded values and the UT-solved values in fp32, the corrected values (fp32; under autocast two
      casts), and the gated norm: its input and the gate in fp32, the gate's SiLU output in fp32, the weighted norm
      in the stream's dtype;
    - Hv x C, the chunk matrices: the pairwise decays and the UT system in fp32, the two products in the compute
      dtype, the intra-chunk attention (fp32; under autocast its cast);
    - one recurrent state per chunk, Hv x dk x dv in fp32 (under autocast two casts besides), and a decay per chunk."""
    lin = arch.linear_attention
    if lin is None:
        return 0.0
    c, s, chunk = shape.compute_bytes, _stream_bytes(shape), GATED_DELTA_CHUNK_TOKENS
    autocast = c < 4
    heads = lin.value_heads
    keys = heads * lin.key_head_dim
    values = lin.value_dim
    conv = 2 * c * lin.conv_dim
    per_head = (s + 8 * 4) * heads
    key_wide = (6 * 4 + 4 * c + (3 * c if autocast else 2 * 4)) * keys
    value_wide = (2 * 4 + (2 * c if autocast else 4) + 3 * 4 + s) * values
    chunk_matrices = (2 * 4 + 2 * c + c) * heads * chunk
    states = ((4 + (2 * c if autocast else 0)) * keys * lin.value_head_dim + 4 * heads) / chunk
    return conv + per_head + key_wide + value_wide + chunk_matrices + states


def _experts_activation_bytes(arch: Architecture, shape: TrainingShape) -> int:
    """Per token, what a mixture's MLP keeps for backward (transformers 5's experts: stacked weights, each expert's
    tokens gathered and its matmuls run on them). Each token goes to k experts, so every expert term counts k times,
    not once per expert: the gate_up product (2I), the activation's output (I) and the expert's output (H, for the
    routing weight's gradient), in the compute dtype; per routed row three int64 indices and its fp32 weight. Where
    adapters are merged into the stacks (their weights then need gradients) the matmuls keep their inputs too: the
    gathered token (H) and the down projection's input (I). The router (never adapted): its fp32
    probabilities, the top-k weights and indices. Measured on the CPU (tests/test_estimate_moe.py)."""
    c, k, i, h = shape.compute_bytes, arch.experts_per_token, arch.intermediate, arch.hidden
    routed = c * (3 * i + h) + 3 * 8 + 4
    if _adapted_stacks(arch, shape):
        routed += c * (h + i)
    router = 4 * arch.experts + k * (8 + 4) + 4
    return k * routed + router


def merged_experts_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """Bytes each decoder layer of a mixture keeps for backward whatever its tokens: peft adds each adapted stack's
    delta to the whole stack for the forward (ParamWrapper), and the matmuls keep that merged copy (every expert's
    weights, in the weights' dtype) for their inputs' gradients."""
    weights = sum(lin.d_in * lin.d_out * arch.experts for lin in _adapted_stacks(arch, shape))
    return weights * _stacked_bytes(shape)


def experts_working_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """What a mixture's layer holds besides its saved tensors while it runs backward (transformers 5's grouped_mm runs
    the experts on all routed rows at once, k a token). Per token: the routed rows' gradients, three intermediate-wide
    ones or, where the experts are narrower than the stream (Qwen3-MoE), four hidden-wide ones while the experts'
    outputs are combined, in the compute dtype; and the residual stream's two. Per layer: stack-sized tensors, a
    transposed copy of the gate_up stack for the input's gradient, and where adapters are merged in also the merged
    stacks' gradients and copies: seven expert-sized matrices in all per expert beside the merged stacks the layer
    keeps (2 x gate_up + 3 x down). Measured on the CPU with torch's grouped_mm, whole steps of the tiny Mixtral and
    Qwen3-MoE (tests/test_estimate_moe.py); a GPU's grouped_mm not measured yet."""
    c, s, k, i, h = shape.compute_bytes, _stream_bytes(shape), arch.experts_per_token, arch.intermediate, arch.hidden
    per_token = k * c * max(3 * i, 4 * h) + 2 * s * h
    matrices = 7 if _adapted_stacks(arch, shape) else 2      # in expert-sized (h x i) matrices per expert
    return per_token * shape.tokens + matrices * arch.experts * h * i * _stacked_bytes(shape)


def _stacked_bytes(shape: TrainingShape) -> int:
    """Bytes per element of a mixture's stacked expert weights while training: unquantised, so in the dtype of the
    other unquantised weights (fp32 after kbit preparation unless cast back); a plain LoRA base's dtype otherwise."""
    if shape.quantization == "none":
        return 2 if shape.compute_bytes == 2 else 4
    return _unquantised_bytes(shape)


def lora_activation_bytes(arch: Architecture, shape: TrainingShape, kind: str = FULL_ATTENTION) -> float:
    """Bytes the adapters of one decoder layer of this kind keep for backward, per token (frozen linears keep no
    input; a hybrid decoder's layer has its own kind's attention linears alone).

    Each adapter keeps the input of its A in the compute dtype and its r-wide output for B. That input is the
    projection's input itself where nothing casts it, and then the adapters reading one tensor keep it once (q, k and
    v the norm's output, gate and up the other norm's); a copy of its own otherwise. nn.Dropout adds its mask and a
    dropped copy per adapter; mask-free dropout (engine.train.mask_free_dropout) keeps what no dropout keeps.
    Measured on the CPU, saved tensors deduplicated by storage (tests/test_estimate_saved_tensors.py)."""
    c = shape.compute_bytes
    lora = 0.0
    kept = set()
    elsewhere = LINEAR_ATTENTION if kind == FULL_ATTENTION else FULL_ATTENTION    # Linear.part of the other kind
    for lin in shape.targets:
        if arch.stacked(lin) or lin.part == elsewhere:
            continue             # merged into the stack: the experts' terms; or in the other kind of layer
        lora += c * shape.r
        given = _adapter_input_bytes(shape, lin)
        if shape.dropout > 0 and not shape.mask_free_dropout:
            lora += (_dropout_mask_bytes(shape, given) + c) * lin.d_in
        elif given != c:
            lora += c * lin.d_in                # autocast's copy, one per adapter
        elif lin.feeds not in kept and not (lin.feeds == "o" and _attention_output_is_o_input(shape)
                                            and not arch.gated_attention_output):
            lora += c * lin.d_in
        kept.add(lin.feeds)
    return lora


def _adapter_input_bytes(shape: TrainingShape, lin: Linear) -> int:
    """Bytes per element of what an adapter's dropout and A receive. peft's LoRA layer casts its input to the adapter's
    dtype (fp32, autocast_adapter_dtype) itself unless it sees autocast: a plain linear always, a 4-bit or 8-bit one
    where autocast is off or, on the CPU, not seen (peft asks torch.is_autocast_enabled(), which reads CUDA's). Else
    the projection's input: the attention's output (compute dtype) for o_proj, the residual stream's width for the
    others (the norms' outputs, and the MLP's product, which bitsandbytes casts back to its input's dtype)."""
    c = shape.compute_bytes
    if c == 2 and (shape.quantization == "none" or shape.device == "cpu"):
        return 4
    return c if lin.feeds == "o" else _stream_bytes(shape)


def _dropout_mask_bytes(shape: TrainingShape, given: int) -> int:
    """Bytes per element of what nn.Dropout keeps for backward: a bool mask on a GPU (native_dropout); on the CPU
    ATen multiplies by a noise tensor in the input's dtype and keeps that."""
    return 1 if shape.device == "cuda" else given


def _attention_output_is_o_input(shape: TrainingShape) -> bool:
    """Whether o_proj's input is the very tensor the attention kernel keeps as its output, so that an adapter on
    o_proj keeps nothing more. The CPU's SDPA writes its output token-major, and transformers' transpose().contiguous()
    is then a view (measured). On a GPU torch's variable-length flash attention does the same (measured on an H100,
    benchmarks/saved_tensors.py: counted apart, the estimate was 8,192 B/token/layer high at dropout 0). Flex and the
    GPU's SDPA kernels are not measured: counted apart."""
    from engine.train.varlen_attention import ATTENTION

    if shape.attention == "eager":   # its output is a fresh tensor the attention does not keep
        return False
    return shape.device == "cpu" or shape.attention == ATTENTION


def _sdpa_packed_mask(shape: TrainingShape) -> bool:
    """Whether the attention runs through SDPA with a packed row's block-diagonal mask (the CPU's path for packed
    rows; a GPU's packed rows go through varlen flash or flex attention, which take the boundaries, not a mask)."""
    return shape.device == "cpu" and shape.packed and shape.attention == "sdpa"


def eager_scores_bytes(arch: Architecture, shape: TrainingShape, tokens: int | None = None) -> tuple[int, int]:
    """(bytes each decoder layer keeps for backward, bytes kept once for the whole step) of eager attention's square
    terms (the plan's attention for Gemma-2 where flex attention does not run: SDPA has no soft-capping). Per head,
    each row's tokens x tokens scores: the soft-capped scores (tanh keeps its output) in the compute dtype, the
    softmax's fp32 probabilities and the compute-dtype copy the second matmul keeps (in fp32 the same tensor): 8 bytes
    a score either way. Once for all layers: the additive masks transformers builds for eager attention in the
    residual stream's dtype, one per layer type (Gemma-2: full and sliding), kept with the checkpointed layers'
    inputs. A row is the packed micro-batch, or one padded example (the plan's row_tokens). (0, 0) for any other
    attention."""
    if shape.attention != "eager":
        return 0, 0
    t = shape.tokens if tokens is None else tokens
    row = min(t, shape.row_tokens or t)
    c = shape.compute_bytes
    per_score = c + 4 + (c if c < 4 else 0)
    layer_types = 2 if arch.model_type in SLIDING_AND_FULL_LAYERS else 1
    return per_score * arch.heads * t * row, layer_types * _stream_bytes(shape) * t * row


def attention_mask_bytes(shape: TrainingShape, tokens: int | None = None) -> tuple[int, int]:
    """(bytes each decoder layer keeps for backward, bytes kept once for the whole step) of a packed row's attention
    mask: tokens x tokens, so they grow with the square of the row, not with its tokens. transformers builds one bool
    mask from position_ids for every layer (1 B an element: the layers' input, alive to the end of backward); the CPU's
    SDPA converts it to an additive mask in the query's dtype in every layer and keeps that copy for backward (measured
    on the CPU, tests/test_estimate_saved_tensors.py). (0, 0) where no such mask is built."""
    if not _sdpa_packed_mask(shape):
        return 0, 0
    t = shape.tokens if tokens is None else tokens
    return shape.compute_bytes * t * t, t * t


def _layer_input_in_norm_bytes(shape: TrainingShape, hidden: int) -> int:
    """Per token, what of a layer's saved tensors is its input itself: the first norm keeps its input as it comes
    where its fp32 upcast is a no-op (an fp32 residual stream: measured on the CPU), and Liger's norm keeps it in any
    dtype (read from its code: a view of X; the H100 and H200 rows with Liger and checkpointing came 0.5-1.2 points
    closer). Checkpointing keeps the layer's input anyway, so its recomputed layer holds this no more."""
    return _stream_bytes(shape) * hidden if shape.fused_loss or _stream_bytes(shape) == 4 else 0


def recomputed_layer_bytes(arch: Architecture, shape: TrainingShape, kind: str = FULL_ATTENTION) -> float:
    """Bytes per token one decoder layer's recomputation (of this kind) adds under checkpointing, beyond the layer's
    input that checkpointing keeps: its saved tensors (torch's non-reentrant checkpoint recomputes all of them before
    their first use in backward), less the input where its norm keeps exactly that tensor."""
    return layer_activation_bytes(arch, shape, kind) - _layer_input_in_norm_bytes(shape, arch.hidden)


def linear_attention_padding_bytes(arch: Architecture, shape: TrainingShape, tokens: int | None = None) -> float:
    """What a linear-attention layer keeps beyond its bytes per token (gated_delta_net_bytes): the gated delta rule
    pads each row to a multiple of its chunk and keeps its chunked tensors at that length, and the convolution's
    output (the SiLU's input) is conv_kernel - 1 tokens longer a row. Rows: the packed micro-batch, or padded examples
    of the plan's row_tokens. 0 for a layer without linear attention."""
    lin = arch.linear_attention
    if lin is None:
        return 0.0
    t = shape.tokens if tokens is None else tokens
    row = min(t, shape.row_tokens or t)
    rows = max(1, -(-t // row)) if row else 1
    padded = rows * (-row % GATED_DELTA_CHUNK_TOKENS)
    c, s = shape.compute_bytes, _stream_bytes(shape)
    # what pads: all but the convolution, the step and decay inputs, the unpadded query and key and the gated norm
    unpadded = (2 * c * lin.conv_dim + (s + 4 * 4) * lin.value_heads
                + 2 * 4 * lin.value_heads * lin.key_head_dim + (3 * 4 + s) * lin.value_dim)
    return padded * (gated_delta_net_bytes(arch, shape) - unpadded) + rows * (lin.conv_kernel - 1) * c * lin.conv_dim


def _norm_saved_bytes(shape: TrainingShape, hidden: int) -> int:
    """Bytes one RMSNorm keeps for backward, per token: its input (fp32, or as it comes under Liger) and an fp32
    reciprocal RMS per token."""
    if shape.fused_loss:
        return _stream_bytes(shape) * hidden + 4
    return 4 * hidden + 4


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _liger_chunk_tokens(arch: Architecture, tokens: int) -> int:
    # Liger's fused linear-cross-entropy processes the logits in chunks of
    # next_power_of_2(ceil(tokens / ceil(vocab / hidden))) rows.
    inc = -(-arch.vocab // arch.hidden)
    rows = max(1, -(-tokens // inc))
    return 1 << (rows - 1).bit_length()


def logits_bytes(arch: Architecture, shape: TrainingShape, tokens: int | None = None,
                 backward: bool = True) -> tuple[float, str]:
    """Peak bytes of the lm_head and loss phase for one micro-batch, with a note (backward False: evaluation)."""
    c, s, v = shape.compute_bytes, _stream_bytes(shape), arch.vocab
    t = shape.tokens if tokens is None else tokens
    # The fp32 lm_head (kbit preparation; kept fp32 under fp16) is cast to the autocast dtype for its
    # matmul: frozen weights are not in autocast's cache, so a 16-bit copy of the whole
    # head is alive while the logits are computed (fused or not; measured).
    head_copy = arch.vocab * arch.hidden * c if shape.quantization != "none" and c == 2 and shape.kbit_upcast else 0.0
    if shape.fused_loss:
        chunk = _liger_chunk_tokens(arch, t)
        note = f"fused linear-cross-entropy: {chunk}-token chunks of the logits, never all at once"
        if head_copy:
            note += f"; plus a {shape.precision} copy of the fp32 lm_head weight"
        return s * arch.hidden * t + chunk * v * (c + 4) + head_copy, note
    # Forward: 16-bit logits (2V), their fp32 upcast in the loss (4V), log_softmax
    # output kept for backward (4V). Backward: the fp32 gradient of the log-probs
    # and of the logits (4V + 4V) while the saved output (4V) is alive: 12V.
    per_token = max(c + 8, 12) * v if backward else (c + 8) * v
    logits = f"{shape.precision} logits upcast to fp32 in the loss" if c == 2 else "fp32 logits"
    note = f"batch x seq x vocab ({v:,}): {logits}, plus fp32 gradients"
    if arch.final_logit_softcap:
        per_token += 2 * c * v          # tanh output kept for backward, plus the capped copy
        note += "; final-logit soft-capping keeps two more copies"
    if head_copy:
        # Unfused, the copy is also kept for backward (the logits' gradient goes through it).
        note += f"; plus a {shape.precision} copy of the fp32 lm_head weight"
    return per_token * t + head_copy, note


def dequant_buffer_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """The largest quantised weight dequantised for a matmul (one at a time), in the dtype the base was loaded
    in: the compute dtype (engine.model.load_base_model), so fp32 on the CPU (bitsandbytes' dequantize_4bit
    returns the quantised tensor's original dtype). Dequantised in a compiled graph: GRAPH_DEQUANT_WEIGHTS of them."""
    if shape.quantization == "none":
        return 0.0
    weights = GRAPH_DEQUANT_WEIGHTS if shape.graph_dequant else 1
    return weights * max(lin.d_in * lin.d_out for lin in arch.linears if not arch.stacked(lin)) * shape.compute_bytes


# Eager mask-free dropout makes each keep mask from a chain of hash steps (engine.train.mask_free_dropout): at most
# this many full-size int64 tensors alive at once, per chunk of the mask, or int32 ones (LEVERS.mask_hash32; measured on
# the CPU).
MASK_HASH_INT64_TENSORS = 5
MASK_HASH_INT32_TENSORS = 4


def mask_free_dropout_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """What eager mask-free LoRA dropout (the plan's mask_free_dropout on layers that are not compiled) adds to a
    layer's backward, for its widest adapter input (one adapter's backward at a time). DroppedLoraA.backward makes the
    bool mask again (1 B an element), through the hash's int64 steps (int32 under the plan's mask_hash32) a chunk at
    a time (EAGER_CHUNK_ELEMENTS, the earlier chunks' bools kept until they are joined), then keeps the mask, the
    input's gradient, its masked product
    and the dropped copy of the input in the compute dtype at once; without dropout the adapter holds only the input's
    gradient. Measured on the CPU (tests/test_estimate_mask_free_dropout.py): this much above the same adapter
    without dropout, to 1 %; the recompute's forward makes the same mask with less beside it. A compiled layer fuses
    the hash into one kernel (its own term: compiled_layer_bytes)."""
    from engine.train.speed import MASK_FREE_EAGER_CHUNK_ELEMENTS as chunk

    if not shape.mask_free_dropout or shape.dropout <= 0 or shape.compile_layers:
        return 0.0
    c, rows = shape.compute_bytes, shape.tokens
    hashing = 4 * MASK_HASH_INT32_TENSORS if shape.mask_hash32 else 8 * MASK_HASH_INT64_TENSORS   # bytes an element
    worst = 0
    for d_in in {lin.d_in for lin in shape.targets}:
        n = rows * d_in
        step = max(1, chunk // d_in)                 # rows a chunk
        full, rest = divmod(rows, step)
        # a chunk's hash beside the chunks made before it: the last full chunk, or the short one after them
        building = max(hashing * step * (full > 0) + (full - 1) * step, hashing * rest + full * step) * d_in
        using = (1 + 3 * c) * n
        worst = max(worst, max(building, using) - c * n)
    return float(worst)


def compiled_layer_bytes(arch: Architecture, shape: TrainingShape) -> float:
    """What compiled decoder layers add to the backward phase's peak (0 for eager layers)."""
    if not shape.compile_layers:
        return 0.0
    return COMPILED_LAYER_MLP_TENSORS * arch.intermediate * shape.compute_bytes * shape.tokens


def partial_offload_layers(arch: Architecture, shape: TrainingShape) -> int:
    """Layer inputs off the GPU at the peak when the first shape.offload_layers are offloaded (the trainer's
    engine.train.speed.PartialOffload): all but those whose copies are in flight, kept in TRL's forward stash until
    the backward (PARTIAL_OFFLOAD_STASH). Only with checkpointing: each layer then keeps its input alone."""
    from engine.train.speed import PARTIAL_OFFLOAD_STASH

    if shape.offload or not shape.gradient_checkpointing:
        return 0
    return max(0, min(shape.offload_layers, arch.layers) - PARTIAL_OFFLOAD_STASH)


def memory(arch: Architecture, params: ParamCounts, shape: TrainingShape) -> Memory:
    c, s, t = shape.compute_bytes, _stream_bytes(shape), shape.tokens
    linear_full, other_full = base_weight_bytes(arch, params, shape)
    n = max(1, shape.shards)
    linear_b, other_b = linear_full / n, other_full / n
    n_lora_full = sum(_lora_tensors(arch, shape))
    n_lora = n_lora_full / n
    opt_alloc, opt_paged = (b / n for b in optimizer_bytes(arch, shape))
    kinds = layer_kinds(arch)
    # per kind of layer: (layers, bytes per token, bytes beyond those: the linear attention's padded chunks)
    per_kind = {kind: (n, layer_activation_bytes(arch, shape, kind),
                       linear_attention_padding_bytes(arch, shape) if kind == LINEAR_ATTENTION else 0.0)
                for kind, n in kinds.items()}
    final_norm = _norm_saved_bytes(shape, arch.hidden) * t
    mask_per_layer, mask_shared = attention_mask_bytes(shape)
    scores_per_layer, scores_shared = eager_scores_bytes(arch, shape)
    mask_shared += scores_shared
    # what one layer of each kind keeps beyond its bytes per token: a linear-attention layer (the gated delta net)
    # takes the 2-D mask alone and runs no SDPA or eager attention, so keeps no t x t mask or scores of its own
    experts = merged_experts_bytes(arch, shape)
    fixed = {kind: experts + (0 if kind == LINEAR_ATTENTION else mask_per_layer + scores_per_layer) for kind in kinds}
    if shape.gradient_checkpointing:
        # HF checkpointing keeps each decoder layer's input (one hidden state per
        # boundary) and rebuilds one layer's activations at a time in backward.
        resident = min(arch.layers, OFFLOAD_RESIDENT_LAYERS) if shape.offload else arch.layers
        moved = partial_offload_layers(arch, shape)
        kept: float = (resident - moved) * s * arch.hidden * t + final_norm + mask_shared
        # the largest layer's recomputation: a hybrid decoder's two kinds of layer keep different tensors
        recompute: float = max(recomputed_layer_bytes(arch, shape, kind) * t + extra + fixed[kind]
                               for kind, (_, _, extra) in per_kind.items())
        kept_note = f"checkpointing on: one hidden state per layer boundary ({arch.layers} layers)"
        if shape.offload:
            kept_note += f", offloaded to host memory ({resident} on the GPU at once)"
        elif moved:
            kept_note += f", {moved} of them in host memory at the peak (the first layers' inputs offloaded)"
    else:
        kept = sum(n * (layer * t + extra + fixed[kind]) for kind, (n, layer, extra) in per_kind.items()) \
            + final_norm + mask_shared
        recompute = 0.0
        sizes = ", ".join(f"{layer / 1024:.0f} KiB per token per {kind + '-attention ' if len(kinds) > 1 else ''}layer"
                          for kind, (_, layer, _) in per_kind.items())
        kept_note = f"checkpointing off: every layer's saved tensors ({sizes})"
    if scores_per_layer:
        row = min(t, shape.row_tokens or t)
        kept_note += (f"; eager attention: each layer's {row:,} x {row:,} scores per head and row, and the "
                      "attention masks")
    elif mask_shared:
        kept_note += f"; the packed row's {t:,} x {t:,} attention mask (and each layer's copy of it)"
    # Gradients alive while one layer runs backward: the residual stream's and
    # the MLP's intermediate ones. Liger's SwiGLU backward writes the gate and up
    # gradients into its saved buffers in place: only the product's gradient is new.
    working: float = ((1 if shape.fused_loss else 3) * s * arch.intermediate + 2 * s * arch.hidden) * t
    if arch.experts > 1:
        working = experts_working_bytes(arch, shape)
    dequant = dequant_buffer_bytes(arch, shape)
    logits, logits_note = logits_bytes(arch, shape)
    compiled = compiled_layer_bytes(arch, shape)
    mask_free = mask_free_dropout_bytes(arch, shape)
    backward_phase = recompute + working + dequant + compiled + mask_free
    logits_peak = logits >= backward_phase

    quant_label = {"nf4": "NF4 + double-quant constants", "int8": "int8 + row scales",
                   "none": f"{8 * (2 if c == 2 else 4)}-bit"}[shape.quantization]
    if shape.quantization == "none":
        unq_dtype = f"{8 * (2 if c == 2 else 4)}-bit"
    else:
        unq_dtype = "fp32 (kbit preparation)" if shape.kbit_upcast else \
            f"{shape.precision} (cast back after kbit preparation)"
    opt_note = {"paged_adamw_32bit": "AdamW 32-bit, paged", "paged_adamw_8bit": "AdamW 8-bit, paged",
                "adamw_torch": "AdamW 32-bit", "adamw_8bit": "AdamW 8-bit",
                "adamw_torch_fused": "AdamW 32-bit, fused"}.get(shape.optimizer, shape.optimizer)
    if opt_paged:
        opt_note += f"; {mem_text(opt_paged / GIB)} in paged memory (nvidia-smi sees it, PyTorch does not)"
    comps = [
        Component("base weights", linear_b / GIB, f"decoder linear layers, {quant_label}"),
        Component("unquantised weights", other_b / GIB,
                  f"embeddings, lm_head, norms{', the stacked experts' if params.experts else ''} in {unq_dtype}"),
        Component("LoRA adapters", n_lora * 4 / GIB, f"{n_lora:,.0f} parameters, fp32"),
        Component("LoRA gradients", n_lora * 4 / GIB, "fp32, kept across gradient accumulation"),
        Component("optimizer states", opt_alloc / GIB, opt_note),
        Component("activations", kept / GIB, kept_note),
        Component("logits and loss", logits / GIB, logits_note, in_peak=logits_peak),
        Component("backward working memory", (recompute + working) / GIB,
                  "one layer recomputed plus its gradients" if recompute else "gradients of one layer",
                  in_peak=not logits_peak),
    ]
    if n > 1:
        # FSDP all-gathers one decoder layer's weights for its forward/backward and prefetches the next.
        gather = 2 * linear_full / arch.layers
        comps.append(Component("FSDP gathered layers", gather / GIB,
                               f"weights, adapters, gradients and optimizer states above are 1/{n} (sharded); "
                               "two decoder layers whole at a time", in_peak=True))
    if dequant:
        width = '16-bit' if c == 2 else 'fp32'
        comps.append(Component("dequantisation buffer", dequant / GIB,
                               f"~{GRAPH_DEQUANT_WEIGHTS:g} x the largest quantised weight in {width}, dequantised "
                               "inside the compiled layers" if shape.graph_dequant else
                               f"largest quantised weight in {width} during its matmul",
                               in_peak=not logits_peak))
    if compiled:
        comps.append(Component("compiled layers", compiled / GIB,
                               f"torch.compile's buffers in the decoder layers: ~{COMPILED_LAYER_MLP_TENSORS} x "
                               f"{arch.intermediate:,} (MLP width) x {t:,} tokens in {shape.precision}, "
                               "measured above eager", in_peak=not logits_peak))
    if mask_free:
        comps.append(Component("mask-free dropout", mask_free / GIB,
                               "eager layers make each LoRA dropout mask again in backward: the widest adapter "
                               "input's mask (and its int64 hash, in chunks) beside its dropped copy",
                               in_peak=not logits_peak))
    peak = sum(x.gib for x in comps if x.in_peak)
    if shape.eval_tokens:
        # Evaluation runs between optimizer steps: the adapters' gradients are freed (set to None), nothing is
        # kept for backward; what it adds to the weights and optimizer states is one layer's working tensors
        # and the loss over its micro-batch (Liger's fused loss there too: engine/train/run.py asks for it).
        te = shape.eval_tokens
        static = linear_b + other_b + n_lora * 4 + opt_alloc
        work = ((3 * s * arch.hidden + 2 * s * arch.intermediate) * te + dequant + sum(attention_mask_bytes(shape, te))
                + sum(eager_scores_bytes(arch, shape, te)))
        eval_logits, _ = logits_bytes(arch, shape, tokens=te, backward=False)
        eval_peak = (static + work + eval_logits) / GIB
        above = eval_peak > peak
        comps.append(Component("evaluation", (work + eval_logits) / GIB,
                               f"{te:,} tokens a micro-batch, no gradients; peaks at {mem_text(eval_peak)}, "
                               + ("above training: that is the peak" if above else "below training"),
                               in_peak=False))
        peak = max(peak, eval_peak)
    if opt_paged:
        comps.append(Component("paged optimizer states", opt_paged / GIB, "unified memory, resident on the GPU",
                               in_peak=False, added=True))
    # The CPU has neither a CUDA context nor PyTorch's caching allocator (tensors are freed back to RAM).
    context = context_gib(shape.device)
    slack = peak * ALLOCATOR_SLACK_FRACTION if shape.device == "cuda" else 0.0
    if shape.device == "cuda":
        comps += [Component("allocator slack", slack, "reserved but unallocated blocks", in_peak=False, added=True),
                  Component("CUDA context", context, "driver, kernels, cuBLAS workspace", in_peak=False,
                            added=True)]
    device_total = peak + opt_paged / GIB + slack + context
    # Loading quantises one 16-bit tensor at a time, then kbit preparation
    # upcasts each unquantised tensor (the embedding is the largest) to fp32.
    staging = 0.0
    if shape.quantization != "none":
        staging = 2 * max(max(lin.d_in * lin.d_out for lin in arch.linears), arch.vocab * arch.hidden)
        # The fp32 upcast happens on every path; the adapters (fp32) come next. Under bf16
        # the engine then casts the unquantised weights back one at a time (keep_unquantised_16bit),
        # so at that moment the fp32 weights, the adapters and a 16-bit copy of the largest
        # unquantised tensor are alive together (measured on an H100: the load peak exceeds
        # what stays after loading by exactly the fp32-over-bf16 bytes plus that copy).
        after_prepare = n_lora_full * 4
        if not shape.kbit_upcast:
            after_prepare += shape.compute_bytes * arch.vocab * arch.hidden
        upcast = params.unquantised * KBIT_UNQUANTISED_BYTES
        # Each rank loads the whole 4-bit model before FSDP shards it (transformers' bitsandbytes loader).
        load_peak = (linear_full + upcast + max(staging, after_prepare)) / GIB
    else:
        load_peak = (linear_full + other_full) / GIB
    return Memory(components=comps, peak_allocated_gib=peak, device_total_gib=device_total, load_peak_gib=load_peak,
                  context_gib=context)


def context_gib(device: str) -> float:
    """What a process holds on its device before any tensor: a CUDA context on a GPU; nothing on the CPU."""
    return CUDA_CONTEXT_GIB if device == "cuda" else 0.0


def need_gib(mem: Memory) -> float:
    """What must fit the card: training on the device (nvidia-smi's view), or loading where that is higher
    (a whole 4-bit copy per rank before FSDP shards it; fp32 upcasts). On the CPU: the larger of the two in RAM."""
    return max(mem.device_total_gib, mem.load_peak_gib + mem.context_gib)


def shape_for_plan(cfg: Config, arch: Architecture, plan: RunPlan, tokens: int | None = None,
                   fused_loss: bool | None = None) -> TrainingShape:
    """The plan of a run (engine.plan.RunPlan), reduced to what memory depends on. tokens / fused_loss override
    the plan's (auto-fit asks about other budgets)."""
    from engine.estimate.params import lora_targets

    t = cfg.training
    return TrainingShape(quantization=cfg.quantization, precision=plan.precision,
                         targets=tuple(lora_targets(arch, cfg.lora.target_modules)), r=cfg.lora.r,
                         dropout=cfg.lora.dropout, optimizer=plan.optimizer,
                         gradient_checkpointing=t.gradient_checkpointing,
                         tokens=plan.largest_microbatch_tokens if tokens is None else tokens,
                         fused_loss=plan.fused_loss if fused_loss is None else fused_loss,
                         kbit_upcast=plan.precision != "bf16", offload=plan.offload and t.gradient_checkpointing,
                         offload_layers=plan.offload_layers, mask_free_dropout=plan.mask_free_dropout,
                         mask_hash32=plan.mask_hash32,
                         shards=plan.processes if plan.parallelism == "fsdp" else 1,
                         eval_tokens=plan.eval_tokens, device=plan.device, compile_layers=plan.compile_layers,
                         graph_dequant=plan.graph_dequant, attention=plan.attention, packed=plan.packing,
                         row_tokens=0 if plan.packing else t.max_seq_length)


def plan_fits(cfg: Config, info: ModelInfo, plan: RunPlan, memory_gib: float, fraction: float | None = None) -> bool:
    """Whether the plan's estimate stays under `fraction` of a GPU of memory_gib (what auto decides on)."""
    mem = memory(info.arch, info.params, shape_for_plan(cfg, info.arch, plan))
    return need_gib(mem) <= (FIT_FRACTION if fraction is None else fraction) * memory_gib
