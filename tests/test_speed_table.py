"""The measured speed table (presets/speed.yaml, engine/estimate/speed_table.py): time from what lorapilot's paths
measured on each card, and an honest word where a card or a path was not measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.estimate import estimate, get_gpu, read_model_config
from engine.estimate.speed_table import speed_basis, speed_rows

REPO = Path(__file__).resolve().parents[1]


def test_every_row_is_a_measurement_with_its_source_and_a_plausible_fraction():
    rows = speed_rows()
    assert {(r.gpu, r.path) for r in rows} >= {("h200-141", "packed"), ("h200-141", "lean"), ("h100-80", "packed")}
    for r in rows:
        assert (REPO / r.source.split(" ")[0]).is_file(), r.source
        assert 0.05 < r.fraction < 0.6, r   # of the 16-bit peak: a 4-bit LoRA step never comes near it
    h200 = next(r for r in rows if r.gpu == "h200-141" and r.model == "llama-2-7b" and r.path == "packed")
    assert h200.tokens_per_s == 8654   # benchmarks/results/user_path-h200-2026-12-03.md


def test_a_measured_card_says_so_and_an_unmeasured_one_names_the_card_it_borrows():
    h200 = speed_basis(get_gpu("h200"), "packed", "nf4")
    assert h200.measured and h200.text == "measured on H200" and "8,654, 8,411, 7,891 tok/s" in h200.detail
    t4 = speed_basis(get_gpu("t4"), "packed", "nf4")
    assert not t4.measured and t4.text == "not measured on T4: assumes the H100's measured efficiency"
    assert t4.fraction == pytest.approx(speed_basis(get_gpu("h100-80"), "packed", "nf4").fraction)
    int8 = speed_basis(get_gpu("h200"), "packed", "int8")
    assert not int8.measured and "int8 not measured" in int8.text


def test_lean_and_packing_off_use_their_own_rate_where_measured():
    lean = speed_basis(get_gpu("h200"), "lean", "nf4")
    packed = speed_basis(get_gpu("h200"), "packed", "nf4")
    assert lean.measured and {r.path for r in lean.rows} == {"lean"} and lean.fraction < packed.fraction
    padded = speed_basis(get_gpu("h200"), "padded", "nf4")
    if any(r.path == "padded" for r in speed_rows()):
        assert {r.path for r in padded.rows} == {"padded"}
    else:
        assert "padded micro-batches (no packing) not measured" in padded.text


def test_the_estimate_times_lean_at_leans_rate():
    """The same micro-batches (max_seq_length 512 keeps lean's cap above every step) on an H200: lean's time is
    the packed time scaled by the two measured fractions: the steps' time (the start-up reads the same model and
    data; the evaluations' first batch of samples is priced at its decode cost, not at the training rate)."""
    info = read_model_config("llama-2-7b")
    lengths = [300] * 320
    times = {}
    for memory in ("fast", "lean"):
        cfg = config_from_dict({"model": "llama-2-7b", "dataset": {"path": "x.jsonl"},
                                "training": {"max_seq_length": 512, "memory": memory}})
        est = estimate(cfg, info, get_gpu("h200"), lengths=lengths)
        assert est.time_basis == "measured on H200"
        times[memory] = (est.time_s - est.startup_s - est.pauses_s, est.plan.train_tokens)
    assert times["fast"][1] == times["lean"][1]
    ratio = speed_basis(get_gpu("h200"), "packed", "nf4").fraction / speed_basis(get_gpu("h200"), "lean", "nf4").fraction
    assert times["lean"][0] == pytest.approx(times["fast"][0] * ratio, rel=1e-6)


def test_a_broken_row_names_the_file_and_the_row(monkeypatch):
    import engine.estimate.speed_table as st

    monkeypatch.setattr(st, "speed_presets", lambda: ({"gpu": "h200-141", "path": "packed", "quantization": "nf4",
                                                       "model": "llama-2-7b", "tokens_per_example": 400,
                                                       "gradient_checkpointing": True, "source": "x"},))
    st.speed_rows.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"speed.yaml row 1: 'tokens_per_s'"):
            st.speed_rows()
    finally:
        st.speed_rows.cache_clear()
