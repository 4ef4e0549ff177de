"""bf16 is decided by the GPU's compute capability (>= 8.0), not by torch's is_bf16_supported (emulation counts).

A T4 (compute capability 7.5) is faked through torch.cuda: torch says bf16 is supported there (it emulates it),
the engine must not.
"""

from __future__ import annotations

import types

import pytest

from engine.config import Config
from engine.errors import ConfigError
from engine.model import compute_dtype_name, detect_hardware


@pytest.fixture
def fake_card(monkeypatch):
    import torch

    def install(capability: tuple[int, int], name: str):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda device=None: types.SimpleNamespace(total_memory=16 * 2 ** 30))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch says on a T4
        monkeypatch.delenv("LORAPILOT_GPU_MEMORY_GIB", raising=False)
        return detect_hardware()
    return install


def test_a_t4_has_no_bf16_although_torch_says_it_has(fake_card):
    hw = fake_card((7, 5), "Tesla T4")
    assert hw.device == "cuda" and hw.capability == (7, 5) and hw.bf16 is False
    assert compute_dtype_name("auto", hw) == "fp16"
    assert compute_dtype_name("fp16", hw) == "fp16"


def test_explicit_bf16_on_a_t4_is_refused_with_the_fix(fake_card):
    hw = fake_card((7, 5), "Tesla T4")
    with pytest.raises(ConfigError, match=r"bf16 needs an Ampere or newer GPU.*Tesla T4.*7\.5") as e:
        compute_dtype_name("bf16", hw)
    assert "training.precision" in str(e.value) and "fp16" in (e.value.fix or "")


def test_ampere_and_newer_get_bf16(fake_card):
    for cap in ((8, 0), (8, 6), (9, 0)):
        hw = fake_card(cap, "NVIDIA card")
        assert hw.bf16 and compute_dtype_name("auto", hw) == "bf16" and compute_dtype_name("bf16", hw) == "bf16"


def test_preflight_flags_bf16_on_the_faked_t4(fake_card):
    from engine.diagnose.finding import blocking
    from engine.diagnose.preflight import preflight

    hw = fake_card((7, 5), "Tesla T4")
    cfg = Config()
    cfg.training.precision = "bf16"
    findings = preflight([], cfg, gpu_bf16=hw.bf16)
    assert any(f.code == "precision_unsupported" and f.severity == "error" for f in findings) and blocking(findings)
