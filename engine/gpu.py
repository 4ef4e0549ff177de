"""GPU sampling through NVML (nvidia-ml-py), with "no GPU" as a state, not an exception.

Used by the monitor (a worker thread, every second or two) and by the
trainer's metrics callback, so NVML is initialised once per process and the
device handles are kept: a sample is then a handful of cheap driver queries.
Nothing here raises for a missing GPU, a missing driver or a field a card
does not report (power on some boards); those read as a state or as None.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from glob import glob
from typing import Any

from engine.settings import GIB, GPU_MEMORY_ENV

OK, NO_GPU, NO_DRIVER = "ok", "no_gpu", "no_driver"



def gpu_memory_cap() -> float | None:
    raw = os.environ.get(GPU_MEMORY_ENV, "").strip()
    if not raw:
        return None
    try:
        cap = float(raw)
    except ValueError:
        cap = -1.0
    if cap <= 0:
        from engine.errors import ConfigError
        raise ConfigError(f"{GPU_MEMORY_ENV}={raw!r}: expected a positive number of GiB",
                          fix=f"unset {GPU_MEMORY_ENV} or set it to e.g. 20")
    return cap


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    mem_used_gib: float
    mem_total_gib: float
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None

    @property
    def mem_frac(self) -> float:
        return self.mem_used_gib / self.mem_total_gib if self.mem_total_gib else 0.0


class _Nvml:
    """The process-wide NVML session: initialised on first use, its outcome remembered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._tried = False
        self.state = NO_DRIVER
        self.reason = "not probed yet"
        self.lib: Any = None
        self.handles: list[Any] = []
        self.names: list[str] = []

    def ensure(self) -> None:
        # A failed init is not retried on every call: the monitor samples
        # every second and the trainer every logging step, and a machine
        # without a driver will not grow one mid-run.
        if self._tried:
            return
        with self._lock:
            if self._tried:
                return
            self._probe()
            self._tried = True

    def _probe(self) -> None:
        try:
            import pynvml
        except ImportError:
            self.state, self.reason = NO_DRIVER, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            self.state, self.reason = _classify_init_error(pynvml, e)
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            names = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
        except pynvml.NVMLError as e:
            self.state, self.reason = NO_DRIVER, f"NVML could not list the GPUs: {e}"
            return
        if not handles:
            self.state, self.reason = NO_GPU, "the NVIDIA driver is loaded but reports no GPU"
            return
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.lib, self.handles, self.names = pynvml, handles, names
        self.state = OK
        self.reason = f"{count} GPU{'s' if count > 1 else ''}" + (
            f" (CUDA_VISIBLE_DEVICES={visible} applies to the trainer, not to this list)" if visible else "")

    def reset(self) -> None:
        """Forget the probe (tests; a driver installed while the app runs)."""
        with self._lock:
            if self.lib is not None:
                try:
                    self.lib.nvmlShutdown()
                except Exception:  # noqa: BLE001 - shutting down a half-broken NVML must not raise
                    pass
            self._clear()


def _classify_init_error(pynvml: Any, e: Exception) -> tuple[str, str]:
    if isinstance(e, getattr(pynvml, "NVMLError_LibraryNotFound", ())):
        # The library ships with the driver: without it, either there is no
        # NVIDIA GPU at all (a laptop, a CPU box) or its driver is not installed.
        if glob("/dev/nvidia[0-9]*"):
            return NO_DRIVER, "an NVIDIA device is present but libnvidia-ml.so (the driver's NVML) is not found"
        return NO_GPU, "no NVIDIA GPU on this machine (no NVIDIA driver found)"
    if isinstance(e, getattr(pynvml, "NVMLError_DriverNotLoaded", ())):
        return NO_DRIVER, "the NVIDIA driver is installed but not loaded"
    if isinstance(e, getattr(pynvml, "NVMLError_NoPermission", ())):
        return NO_DRIVER, "no permission to talk to the NVIDIA driver"
    return NO_DRIVER, f"NVML failed to start: {e}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_NVML = _Nvml()


def gpu_state() -> tuple[str, str]:
    """("ok" | "no_gpu" | "no_driver", a sentence saying why)."""
    _NVML.ensure()
    return _NVML.state, _NVML.reason


def gpu_count() -> int:
    _NVML.ensure()
    return len(_NVML.handles)


def _field(fn: Any, *args: Any) -> Any:
    # One unsupported query (power on a T4 in some clouds, temperature in a
    # MIG slice) blanks that field, not the whole sample.
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError subclasses vary by driver
        return None


def sample_gpus() -> list[GpuSample]:
    """One sample per GPU; an empty list when there is no usable GPU (see gpu_state)."""
    _NVML.ensure()
    nv = _NVML.lib
    if nv is None:
        return []
    out = []
    for i, h in enumerate(_NVML.handles):
        mem = _field(nv.nvmlDeviceGetMemoryInfo, h)
        util = _field(nv.nvmlDeviceGetUtilizationRates, h)
        temp = _field(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        power_mw = _field(nv.nvmlDeviceGetPowerUsage, h)
        out.append(GpuSample(
            index=i,
            name=_NVML.names[i],
            mem_used_gib=(mem.used / GIB) if mem is not None else 0.0,
            mem_total_gib=(mem.total / GIB) if mem is not None else 0.0,
            util_pct=float(util.gpu) if util is not None else None,
            temp_c=float(temp) if temp is not None else None,
            power_w=(power_mw / 1000.0) if power_mw is not None else None,
        ))
    return out


def supports_bf16(capability: tuple[int, int] | None) -> bool:
    """bf16 in hardware: compute capability 8.0 (Ampere) and newer.

    Not torch.cuda.is_bf16_supported(): that counts emulation, and says yes on a T4 (7.5), where bf16
    matmuls run many times slower than fp16 ones.
    """
    return capability is not None and tuple(capability) >= (8, 0)


def compute_capability(index: int = 0) -> tuple[int, int] | None:
    """The GPU's CUDA compute capability from NVML (no CUDA context), or None."""
    _NVML.ensure()
    if _NVML.lib is None or index >= len(_NVML.handles):
        return None
    cap = _field(_NVML.lib.nvmlDeviceGetCudaComputeCapability, _NVML.handles[index])
    return (int(cap[0]), int(cap[1])) if cap is not None else None


def reset() -> None:
    _NVML.reset()
