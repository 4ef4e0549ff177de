"""GPU cards: the presets, lookup by a typed name, and the card present (NVML)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import ConfigError
from engine.estimate.presets import gpu_presets

if TYPE_CHECKING:   # NVML lives in engine.gpu, imported lazily like NVML itself
    from engine.gpu import GpuSample


@dataclass(frozen=True)
class GpuSpec:
    id: str
    name: str
    memory_gib: float
    bf16: bool | None            # None: unknown (a detected card without a preset)
    tflops_16bit: float | None   # dense datasheet peak; None: no time estimate
    detected: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _spec(entry: dict) -> GpuSpec:
    return GpuSpec(id=entry["id"], name=entry["name"], memory_gib=float(entry["memory_gib"]),
                   bf16=bool(entry["bf16"]), tflops_16bit=float(entry["tflops_16bit"]))


def list_gpus() -> list[GpuSpec]:
    return [_spec(e) for e in gpu_presets()]


def _key(name: str) -> str:
    """'NVIDIA A100 80GB' and 'a100-80' compare equal."""
    s = name.lower()
    s = re.sub(r"\b(nvidia|tesla|geforce)\b", "", s)
    s = re.sub(r"(\d)\s*gb\b", r"\1", s)
    return re.sub(r"[^a-z0-9]", "", s)


def get_gpu(name: str) -> GpuSpec:
    """A preset by id, alias or full name (case and punctuation ignored)."""
    wanted = _key(name)
    for entry in gpu_presets():
        names = [entry["id"], entry["name"], *entry.get("aliases", [])]
        if wanted in {_key(n) for n in names}:
            return _spec(entry)
    valid = ", ".join(e["id"] for e in gpu_presets())
    raise ConfigError(f"--gpu {name!r}: unknown GPU; one of {valid}")


def match_nvml_name(nvml_name: str, memory_gib: float) -> GpuSpec | None:
    """The preset for a card as NVML names it ('NVIDIA A100-SXM4-80GB'), its memory breaking ties."""
    words = set(re.split(r"[^a-z0-9]+", nvml_name.lower()))
    candidates = [e for e in gpu_presets() if str(e["nvml"]) in words]
    if not candidates:
        return None
    best = min(candidates, key=lambda e: abs(float(e["memory_gib"]) - memory_gib))
    spec = _spec(best)
    # A card outside the preset's memory class (an H100 NVL 94 GB, say) keeps its own memory.
    return GpuSpec(id=spec.id, name=nvml_name, memory_gib=round(memory_gib, 2), bf16=spec.bf16,
                   tflops_16bit=spec.tflops_16bit, detected=True)


def spec_for_sample(sample: GpuSample) -> GpuSpec:
    """The spec of a card NVML sampled (engine.gpu.GpuSample): its preset, or for a card without one, its own
    name and memory with bf16 from its compute capability when NVML tells it."""
    matched = match_nvml_name(sample.name, sample.mem_total_gib)
    if matched is not None:
        return matched
    from engine.gpu import compute_capability, supports_bf16
    capability = compute_capability(sample.index)
    return GpuSpec(id="detected", name=sample.name, memory_gib=round(sample.mem_total_gib, 2),
                   bf16=supports_bf16(capability) if capability is not None else None, tflops_16bit=None,
                   detected=True)


def detect_gpu() -> GpuSpec | None:
    """The first visible GPU as a spec, or None without a GPU or driver."""
    from engine.gpu import gpu_memory_cap, sample_gpus   # NVML lives there; imported lazily like NVML itself

    samples = sample_gpus()
    if not samples:
        return None
    matched = spec_for_sample(samples[0])
    cap = gpu_memory_cap()  # the trainer will plan for the cap: so does the estimate
    if cap is not None and cap < matched.memory_gib:
        from dataclasses import replace
        matched = replace(matched, name=f"{matched.name} (capped at {cap:g} GiB)", memory_gib=cap)
    return matched
