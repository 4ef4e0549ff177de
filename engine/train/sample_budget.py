"""When the trainer samples at an evaluation, and which decoder it uses.

Samples may take at most SAMPLE_TIME_SHARE of the run's time. On a GPU two decoders exist (engine.samples):
model.generate, bound by the host's cost per op (3 prompts x 128 tokens of a 4-bit 7B: 11.7 s on an H200),
and fast decode, the same greedy loop replayed as CUDA graphs (1.7 s), whose first call compiles it
(57-72 s on a fresh H200; benchmarks/results/h200-2026-12-02.md). Fast decode is chosen at the first
evaluation when the rest of the run is long enough for its compile to pay off within the share; a shorter run
samples with generate, whose first batch comes sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.settings import GIB

SAMPLE_TIME_SHARE = 0.05
SAMPLE_FREE_S = 10.0  # samples this cheap in all never count against the share (the demo, small models)
# Fast decode on an H200 (2026-12-02): its first call took 57 s (Llama-2-7B) and 72 s (Llama-3-8B) cold;
# in steady state it decodes 6.9-7.3x faster than generate.
FAST_FIRST_CALL_S = 72.0
FAST_SPEEDUP = 6.9


FAST_DECODE_MARGIN_GIB = 1.0  # its CUDA graphs' private pool and fragmentation, above the KV cache
MEMORY_USE_LIMIT = 0.95       # of the GPU (or of LORAPILOT_GPU_MEMORY_GIB)


def kv_cache_bytes(config, rows: int, length: int, dtype_bytes: int = 2) -> int:
    """Fast decode's static KV cache: keys and values of every layer for `rows` rows of `length` tokens."""
    heads = getattr(config, "num_attention_heads", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * rows * length * dtype_bytes


def fast_decode_fits(peak_bytes: float, limit_bytes: float, cache_bytes: float) -> bool:
    """Fast decode keeps its KV cache and graphs allocated through the rest of training: they must fit beside
    training's peak (Llama-2-7B, 3 prompts of up to 410 + 128 tokens: 0.8 GiB of cache)."""
    return peak_bytes + cache_bytes + FAST_DECODE_MARGIN_GIB * GIB <= MEMORY_USE_LIMIT * limit_bytes


def fast_pays_off(remaining_s: float) -> bool:
    """Whether samples over the rest of the run are more with fast decode, after its compile, than with generate.

    Within the share, generate affords SHARE*T/g batches in time T; fast decode (SHARE*T - F)/f with f = g/speedup.
    Fast gives more when SHARE*T*(1 - 1/speedup) > F: about 28 minutes with the numbers above.
    """
    return remaining_s * SAMPLE_TIME_SHARE * (1 - 1 / FAST_SPEEDUP) > FAST_FIRST_CALL_S


def expected_spend(batches: int, other_s: float, batch_s: float | None, first_due: bool = True) -> float:
    """The seconds the samples of `batches` evaluations take by the rule next_batch keeps (the estimate and the
    monitor's ETA count by it), beside `other_s` seconds of everything else.

    The first batch always (when first_due: no evaluation has sampled yet), later ones while the total stays within
    SAMPLE_TIME_SHARE of the whole run (samples included) or SAMPLE_FREE_S; batch_s None (a batch's cost unknown):
    at that ceiling. The trainer measures the share on the time so far, so this counts at most what it lets through.
    """
    if batches <= 0:
        return 0.0
    ceiling = SAMPLE_TIME_SHARE / (1 - SAMPLE_TIME_SHARE) * other_s
    if batch_s is None:
        return ceiling
    later = min(batches * batch_s, max(ceiling, SAMPLE_FREE_S))
    return max(batch_s, later) if first_due else later


@dataclass
class SampleBudget:
    """The samples' account over one run.

    fast_allowed: fast decode may be chosen by itself (a GPU, the fast memory path, one process).
    forced: the decoder LORAPILOT_FAST_DECODE names ("generate", "compile", "eager"), which is then always used.
    """
    fast_allowed: bool = False
    forced: str | None = None
    spent: float = 0.0           # seconds of all batches so far
    last_cost: float = 0.0       # the last batch's
    batches: int = 0
    way: str | None = None       # the decoder this run samples with, chosen at the first evaluation

    def next_batch(self, run_s: float, remaining_s: float, fast_fits: bool = True) -> str | None:
        """The decoder for this evaluation's samples, or None to skip them.

        fast_fits: fast decode's memory fits beside training's (read at the first evaluation).
        The first evaluation always samples. Later ones sample while the total stays within the share; after
        fast decode's compiling first call its next batch is expected to cost nothing: it is then measured, and
        being wrong costs one steady batch over the share at most.
        """
        if self.batches == 0:
            chosen = self.fast_allowed and fast_fits and fast_pays_off(remaining_s)
            self.way = self.forced or ("compile" if chosen else "generate")
            return self.way
        expected = 0.0 if self.batches == 1 and self.way == "compile" else self.last_cost
        return self.way if self.spent + expected <= max(SAMPLE_TIME_SHARE * run_s, SAMPLE_FREE_S) else None

    def record(self, seconds: float, fell_back: bool = False) -> None:
        """fell_back: fast decode failed in this batch and generate answered; the run goes on with generate."""
        self.spent += seconds
        self.last_cost = seconds
        self.batches += 1
        if fell_back:
            self.way = "generate"
