"""What the wizard asks the engine, each call run in a worker thread (no Textual here).

The GPUs, the model's config, the data's rows, the tokenized data (in a helper
process: tui.models.data_inspection), the estimate and the pre-flight checks.
Each returns what the wizard's state keeps, or raises what its screen shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from engine.config import Config
from engine.errors import UserError
from engine.estimate.command import planned_processes
from tui.error_log import say

if TYPE_CHECKING:  # each loads inside its call, in the worker
    from engine.data.types import DataReport, TokenizedExample
    from engine.diagnose.finding import Finding
    from engine.estimate import Estimate, GpuSpec, ModelInfo


def detect_gpus() -> tuple[list[GpuSpec], GpuSpec | None]:
    from engine.estimate import detect_gpu, list_gpus
    return list_gpus(), detect_gpu()


def lookup_model(model: str) -> ModelInfo:
    from engine.estimate import read_model_config
    return read_model_config(model)


def count_rows(cfg: Config) -> tuple[int, str]:
    """Rows and format: cheap (no tokenizer), and all the step count needs."""
    from engine.data import read_rows
    rows, fmt, _sources = read_rows(cfg.dataset.path, cfg.dataset.format)
    return len(rows), fmt


class PlanLengths(TypedDict, total=False):
    """The tokenized lengths the plan packs, as keyword arguments of estimate_for and auto_fit."""
    lengths: list[int] | None
    val_lengths: list[int] | None


def plan_lengths(cfg: Config, report: DataReport | None, examples: list[TokenizedExample],
                 data_pending: bool) -> PlanLengths:
    """The tokenized examples' lengths, split as the trainer splits them, for the run's plan (engine.plan): the
    estimate then packs the micro-batches the trainer will, as `lorapilot estimate` does. Empty while the data is
    being read (the estimate says it assumed full-length examples)."""
    if report is None or data_pending or not examples:
        return {}
    # inspect_config's examples are the training ones; the validation lengths come with its report
    train, val = [len(e) for e in examples], list(getattr(report, "validation_lengths", None) or [])
    return {"lengths": train or None, "val_lengths": val or None}


def estimate_and_check(cfg: Config, model_info: ModelInfo | None, gpu: GpuSpec | None, n_examples: int | None,
                       price: float | None, report: DataReport | None, examples: list[TokenizedExample],
                       data_pending: bool, data_error: str | None = None,
                       ) -> tuple[Estimate | None, list[Finding] | None, str | None, str | None]:
    """The estimate, then the pre-flight over the tokenized examples (with the estimate's memory if any).
    data_error: the rows' read error (the Dataset step's problem): no step count from a file that does not read.

    Returns (estimate, findings, the pre-flight's error, the estimate's error), each error as one line.

    Raises only when the estimate fails and the pre-flight had nothing to run on.
    """
    from engine.estimate.command import estimate_for
    est, est_error = None, None
    try:
        if model_info is None:
            raise UserError("the estimate needs the model's size: pick a model that can be read")
        # The one estimate `lorapilot estimate` and the sweep show for this config: same steps, same time.
        est, _ = estimate_for(cfg, model_info, gpu, n_examples=n_examples, price_per_hour=price, data_error=data_error,
                              **plan_lengths(cfg, report, examples, data_pending))
    except Exception as exc:  # noqa: BLE001 - a checklist line; say below logs it when it is a bug
        est_error = exc
    findings, pf_error = None, None
    if report is not None and not data_pending:
        try:
            from engine.diagnose.preflight import preflight
            # The card's total against what must fit it (nvidia-smi's view of training, context and slack
            # included, or loading where that peaks higher): the comparison the estimate's own fit test makes,
            # so the checklist's memory line and the verdict never disagree.
            findings = preflight(examples, cfg, gpu_bf16=getattr(gpu, "bf16", None),
                                 est_peak_gib=est.need_gib if est else None,
                                 gpu_total_gib=gpu.memory_gib if (est and gpu) else None,
                                 dropped=getattr(report, "dropped", None),
                                 too_long_lengths=getattr(report, "too_long_lengths", ()),
                                 model=model_info.arch if model_info else None,
                                 num_gpus=planned_processes(cfg, gpu),
                                 # the plan's step counts (the status line's), not a second count
                                 planned_steps=(est.steps_per_epoch, est.total_steps) if est else None)
        except Exception as exc:  # noqa: BLE001 - a checklist line; say logs it when it is a bug
            pf_error = say(exc, "pre-flight checks")
    if est_error is not None and findings is None:
        raise est_error
    return est, findings, pf_error, (say(est_error, "the estimate") if est_error else None)
