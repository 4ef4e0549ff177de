"""engine.gpu and engine.system on a machine without a GPU, and NVML answers faked where a GPU is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types

import pytest

from engine import gpu, system


@pytest.fixture(autouse=True)
def fresh_nvml():
    gpu.reset()
    yield
    gpu.reset()


def test_no_gpu_is_a_state_not_an_exception():
    state, reason = gpu.gpu_state()
    assert state in ("no_gpu", "no_driver")
    assert reason and ("NVIDIA" in reason or "nvidia" in reason)
    assert gpu.sample_gpus() == []
    assert gpu.gpu_count() == 0


def test_missing_nvidia_ml_py_reads_as_no_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)   # makes `import pynvml` raise ImportError
    assert gpu.gpu_state() == ("no_driver", "nvidia-ml-py is not installed (pip install nvidia-ml-py)")


class _Err(Exception):
    pass


def _fake_nvml(count: int, init_error: type[Exception] | None = None):
    calls = {"init": 0}
    nv = types.SimpleNamespace(NVMLError=_Err, NVMLError_LibraryNotFound=type("LNF", (_Err,), {}),
                               NVMLError_DriverNotLoaded=type("DNL", (_Err,), {}), NVML_TEMPERATURE_GPU=0)

    def init():
        calls["init"] += 1
        if init_error:
            raise init_error("boom")

    def power(h):
        if h == 1:
            raise _Err("power not supported")   # some boards do not report it
        return 301_500

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: None
    nv.nvmlDeviceGetCount = lambda: count
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3" if h == 0 else "NVIDIA A10G"
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(17 + h) * gpu.GIB, total=80 * gpu.GIB)
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=40)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 71
    nv.nvmlDeviceGetPowerUsage = power
    return nv, calls


def test_samples_every_gpu_and_blanks_only_the_unsupported_field(monkeypatch):
    nv, calls = _fake_nvml(2)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert gpu.gpu_state()[0] == "ok"
    first = gpu.sample_gpus()
    assert [g.name for g in first] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10G"]
    assert first[0].mem_used_gib == pytest.approx(17.0) and first[0].mem_total_gib == pytest.approx(80.0)
    assert first[0].power_w == pytest.approx(301.5) and first[0].temp_c == 71 and first[0].util_pct == 97
    assert first[1].power_w is None and first[1].temp_c == 71
    assert first[0].mem_frac == pytest.approx(17 / 80)
    gpu.sample_gpus()
    # Initialised once: the trainer's callback samples every logging step.
    assert calls["init"] == 1


@pytest.mark.parametrize("error_name, state", [("NVMLError_DriverNotLoaded", "no_driver"), ("NVMLError", "no_driver")])
def test_init_failures_are_states(monkeypatch, error_name, state):
    nv, _ = _fake_nvml(1)
    nv.nvmlInit = lambda: (_ for _ in ()).throw(getattr(nv, error_name)("x"))
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert gpu.gpu_state()[0] == state
    assert gpu.sample_gpus() == []


def test_driver_with_zero_gpus(monkeypatch):
    nv, _ = _fake_nvml(0)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert gpu.gpu_state()[0] == "no_gpu"


def test_machine_sample_is_sane():
    system.machine_sample()
    m = system.machine_sample()
    assert 0 <= m.cpu_pct <= 100 and m.cpu_count >= 1
    assert 0 < m.ram_used_gib < m.ram_total_gib
    assert 0 < m.ram_frac < 1


def test_process_sampler_measures_a_busy_child_and_notices_its_exit():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<30: pass"])
    try:
        sampler = system.ProcessSampler()
        first = sampler.sample(child.pid)
        assert first.alive and first.rss_gib > 0
        time.sleep(0.5)
        busy = sampler.sample(child.pid)
        assert busy.cpu_pct > 20
    finally:
        child.kill()
        child.wait()
    assert sampler.sample(child.pid).alive is False
    assert system.process_sample(None) is None


def test_process_sampler_treats_a_zombie_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    # Not reaped: the pid exists as a zombie, which is not a live trainer.
    while time.time() < deadline and open(f"/proc/{child.pid}/stat").read().split(") ")[1][0] != "Z":
        time.sleep(0.05)
    try:
        assert system.ProcessSampler().sample(child.pid).alive is False
    finally:
        child.wait()


def test_own_process_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    try:
        s = system.ProcessSampler().sample(os.getpid())
        assert s.alive and s.children >= 1
    finally:
        child.kill()
        child.wait()
