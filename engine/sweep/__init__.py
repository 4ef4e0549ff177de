"""The hyperparameter sweep: short trials over learning rate x LoRA r, hopeless ones stopped early.

    engine.sweep.summarize_sweep(sweep_dir) -> dict   what a monitor shows (engine/sweep/summary.py)
    engine.sweep.command                              the `lorapilot sweep` verb
    engine.sweep.plan                                 grid, budget fit, the early-stop rule (pure)
"""

from engine.sweep.summary import summarize_sweep

__all__ = ["summarize_sweep"]
