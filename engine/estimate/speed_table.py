"""The measured speed table (presets/speed.yaml): what fraction of a card's 16-bit peak lorapilot's paths sustain.

Each row is one measured run (card, path, quantization, model, tokens/s). Its fraction of the card's dense 16-bit
peak is derived from the model's FLOPs per token, so a row measured on Llama-2-7B times a Qwen or a 70B on the same
card and path. A card or a path without rows borrows the nearest measured one, and the basis says so: the user
reads "measured on H200" or "not measured on T4: assumes the H100's measured efficiency".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from engine.errors import ConfigError
from engine.estimate.gpus import GpuSpec, list_gpus
from engine.estimate.presets import SPEED_FILE, speed_presets

PATHS = ("packed", "compiled", "lean", "lean_compiled", "padded")
_PATH_WORDS = {"packed": "the default packed path", "compiled": "the packed path with compiled decoder layers",
               "lean": "memory: lean", "lean_compiled": "memory: lean with compiled decoder layers",
               "padded": "padded micro-batches (no packing)"}
# A compiled path and the eager path it compiles: a card that did not measure the first is timed from the second.
_EAGER_OF = {"compiled": "packed", "lean_compiled": "lean"}


@dataclass(frozen=True)
class SpeedRow:
    gpu: str
    path: str
    quantization: str
    model: str
    tokens_per_s: float
    tokens_per_example: int
    gradient_checkpointing: bool
    source: str
    fraction: float          # of the card's dense 16-bit peak, derived from tokens_per_s


@dataclass(frozen=True)
class SpeedBasis:
    """The fraction a run's time is computed with, and where it comes from, in the user's words."""
    fraction: float
    measured_on: str         # the gpus.yaml id whose rows gave the fraction
    measured: bool           # the rows are of this card, path and quantization
    text: str                # "measured on H200" / "not measured on T4: assumes the H100's measured efficiency"
    detail: str              # the path, the fraction and the measured speeds it comes from
    rows: tuple[SpeedRow, ...]


def path_of(memory: str, packing: bool, compile_layers: bool) -> str:
    """The speed table's path for a plan's memory mode, packing and compiled layers (RunPlan.compile_layers).
    Compiled layers are measured on the packed and lean paths: padded with them is timed at its own rate."""
    if memory == "lean":
        return "lean_compiled" if compile_layers else "lean"
    if not packing:
        return "padded"
    return "compiled" if compile_layers else "packed"


def _fraction(entry: dict, gpu: GpuSpec) -> float:
    from engine.estimate.model_config import read_model_config
    from engine.estimate.params import lora_params
    from engine.estimate.timing import flops_per_token

    info = read_model_config(entry["model"])
    lora = lora_params(info.arch, list(info.arch.linears), 16)   # the measured runs: r 16 on every linear
    fpt = flops_per_token(info.arch, info.params, lora, int(entry["tokens_per_example"]),
                          bool(entry["gradient_checkpointing"]))
    assert gpu.tflops_16bit
    return float(entry["tokens_per_s"]) * fpt / (gpu.tflops_16bit * 1e12)


@lru_cache(maxsize=1)
def speed_rows() -> tuple[SpeedRow, ...]:
    """Every row of presets/speed.yaml with its derived fraction. A row naming an unknown card, path or model is a
    broken preset file: said with the file and the row."""
    cards = {g.id: g for g in list_gpus()}
    out = []
    for i, entry in enumerate(speed_presets()):
        where = f"{SPEED_FILE} row {i + 1}"
        try:
            gpu = cards[entry["gpu"]]
            if entry["path"] not in PATHS:
                raise ConfigError(f"{where}: path {entry['path']!r}: one of {', '.join(PATHS)}")
            out.append(SpeedRow(gpu=gpu.id, path=entry["path"], quantization=entry["quantization"],
                                model=entry["model"], tokens_per_s=float(entry["tokens_per_s"]),
                                tokens_per_example=int(entry["tokens_per_example"]),
                                gradient_checkpointing=bool(entry["gradient_checkpointing"]),
                                source=str(entry["source"]), fraction=_fraction(entry, gpu)))
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]!r} missing or unknown") from None
    return tuple(out)


def _short(gpu_id: str) -> str:
    """'h200-141' -> 'H200': the card as people say it."""
    return gpu_id.split("-")[0].upper()


def _nearest(gpu: GpuSpec, measured: set[str]) -> str:
    """The measured card closest to `gpu`: 16-bit peak first, then memory (both as ratios)."""
    cards = {g.id: g for g in list_gpus()}

    def distance(card_id: str) -> tuple[float, float]:
        c = cards[card_id]
        return (abs(math.log((c.tflops_16bit or 1) / (gpu.tflops_16bit or 1))),
                abs(math.log(c.memory_gib / gpu.memory_gib)))

    return min(sorted(measured), key=distance)


def speed_basis(gpu: GpuSpec, path: str, quantization: str) -> SpeedBasis | None:
    """The fraction of `gpu`'s 16-bit peak a run on `path` sustains, from the table's rows: this card's where
    measured, else the nearest measured card's; the path's own rows, else the packed path's; the quantization's
    own rows, else nf4's. A card without compiled rows takes its eager path's rate times the compiled layers' gain
    on the nearest card that measured both. None for a card without a 16-bit peak (no time estimate)."""
    if not gpu.tflops_16bit:
        return None
    if path in _EAGER_OF and not any(r.gpu == gpu.id and r.path == path for r in speed_rows()):
        return _compiled_from_eager(gpu, path, quantization)
    return _measured_basis(gpu, path, quantization)


def _mean_fraction(rows: list[SpeedRow]) -> float:
    return sum(r.fraction for r in rows) / len(rows)


def _compiled_from_eager(gpu: GpuSpec, path: str, quantization: str) -> SpeedBasis:
    """Compiled layers on a card that did not measure them on `path`: its own (or borrowed) rate on the eager path
    under it times their gain where both were measured. Borrowing the other card's compiled fraction outright would
    carry over the two cards' difference in the eager path too (the H100's packed rows run at 31 % of the peak, the
    H200's at 35 %)."""
    eager_path = _EAGER_OF[path]
    eager = _measured_basis(gpu, eager_path, quantization)
    rows = speed_rows()
    both = {r.gpu for r in rows if r.path == path} & {r.gpu for r in rows if r.path == eager_path}
    if not both:   # no card measured the gain: time it as the eager path, and say so
        return replace(eager, measured=False, text=eager.text + f" ({_PATH_WORDS[path]} not measured: "
                       f"assumes {_PATH_WORDS[eager_path]}'s)")
    ref = _nearest(gpu, both)
    gain = (_mean_fraction([r for r in rows if r.gpu == ref and r.path == path])
            / _mean_fraction([r for r in rows if r.gpu == ref and r.path == eager_path]))
    note = f"compiled layers not measured on {_short(gpu.id)}: x{gain:.2f}, their gain on {_short(ref)}"
    text = eager.text[:-1] + f"; {note})" if eager.text.endswith(")") else eager.text + f" ({note})"
    return SpeedBasis(fraction=eager.fraction * gain, measured_on=eager.measured_on, measured=False, text=text,
                      detail=f"{eager.detail}; {_PATH_WORDS[path]} x{gain:.2f}, as measured on {_short(ref)}",
                      rows=eager.rows + tuple(r for r in rows if r.gpu == ref and r.path == path))


def _measured_basis(gpu: GpuSpec, path: str, quantization: str) -> SpeedBasis:
    """speed_basis from the rows of `path` itself (or the packed path's, where it has none)."""
    assert gpu.tflops_16bit
    rows = speed_rows()
    assumed = []
    quant_rows = [r for r in rows if r.quantization == quantization]
    if not quant_rows:
        assumed.append(f"quantization {quantization} not measured: assumes nf4's")
        quant_rows = [r for r in rows if r.quantization == "nf4"]
    path_rows = [r for r in quant_rows if r.path == path]
    if not path_rows:
        assumed.append(f"{_PATH_WORDS[path]} not measured: assumes the packed path's")
        path_rows = [r for r in quant_rows if r.path == "packed"]
    measured_on = gpu.id if any(r.gpu == gpu.id for r in path_rows) else _nearest(gpu, {r.gpu for r in path_rows})
    used = tuple(r for r in path_rows if r.gpu == measured_on)
    fraction = _mean_fraction(list(used))
    by_model: dict[str, list[str]] = {}
    for r in used:
        by_model.setdefault(r.model, []).append(f"{r.tokens_per_s:,.0f}")
    speeds = "; ".join(f"{model} {', '.join(v)} tok/s" for model, v in by_model.items())
    if measured_on == gpu.id:
        short = f"measured on {_short(gpu.id)}"
    else:
        short = f"not measured on {_short(gpu.id)}: assumes the {_short(measured_on)}'s measured efficiency"
    if assumed:
        short += " (" + "; ".join(assumed) + ")"
    detail = f"{_PATH_WORDS[used[0].path]} on {_short(measured_on)}: {fraction:.0%} of the 16-bit peak ({speeds})"
    return SpeedBasis(fraction=fraction, measured_on=measured_on, measured=measured_on == gpu.id and not assumed,
                      text=short, detail=detail, rows=used)
