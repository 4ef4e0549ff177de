"""Cutting each optimizer step's examples into micro-batches, and collating them.

The effective batch (examples per optimizer step) is the user's
hyperparameter; how it is cut into forward passes is the engine's choice.
With packing, the examples of a step are spread over the fewest micro-batches
whose tokens fit a budget (first-fit decreasing), and each micro-batch is one
row of concatenated examples: positions restart at each example and no
attention_mask is passed, so transformers builds a block-diagonal mask from
position_ids (an all-ones mask beside position_ids would silently let
examples attend to each other). Without packing, micro-batches hold
`micro_batch_size` examples padded to the longest.

The plan for every epoch the run walks is fixed up front from the seed (each epoch
its own shuffle, also past num_epochs when max_steps asks for more), so the same
examples land in the same optimizer steps on every run and after a resume.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.data.types import IGNORE_INDEX, TokenizedExample

if TYPE_CHECKING:  # annotations only: the trainer imports torch when it collates
    import torch


@dataclass
class StepPlan:
    """Per epoch, per optimizer step, the micro-batches as lists of example indices."""
    epochs: list[list[list[list[int]]]]   # epoch -> step -> micro-batch -> example indices
    micro_batches_per_step: int           # constant: the Trainer's gradient_accumulation_steps
    examples_per_step: int

    @property
    def steps_per_epoch(self) -> int:
        return len(self.epochs[0]) if self.epochs else 0

    def flat(self, epoch: int) -> list[list[int]]:
        return [mb for step in self.epochs[epoch] for mb in step]


def _bins_needed(lengths: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing over one step's examples; returns positions into `lengths`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in order:
        for b, load in enumerate(loads):
            if load + lengths[i] <= budget:
                bins[b].append(i)
                loads[b] += lengths[i]
                break
        else:
            bins.append([i])
            loads.append(lengths[i])
    return bins


def _split_to(bins: list[list[int]], lengths: list[int], n: int) -> list[list[int]]:
    """Exactly n non-empty micro-batches (when there are enough examples), balanced by tokens."""
    bins = [list(b) for b in bins if b]
    while len(bins) < n:
        splittable = [b for b in bins if len(b) > 1]
        if not splittable:
            break
        big = max(splittable, key=lambda b: sum(lengths[i] for i in b))
        bins.remove(big)
        big.sort(key=lambda i: -lengths[i])
        bins += [big[0::2], big[1::2]]
    return bins


# Distinct shuffles a run plans at most; epoch e walks planned order e mod this. Every planned epoch is packed up
# front (the wizard re-plans on each keystroke): a million steps over 100 rows would be 80,000 epochs, minutes and
# gigabytes. Past 64 passes over the same rows a new order changes nothing a user could measure.
MAX_SHUFFLES = 64


def epochs_to_plan(steps_per_epoch: int, run_steps: int) -> int:
    """Epochs the run walks, each its own shuffle: as many as its steps need, the Trainer's own rule
    (transformers: num_train_epochs = ceil(max_steps / update steps per epoch)), at most MAX_SHUFFLES (later epochs
    repeat them in turn: planned_epoch). max_steps past num_epochs plans more epochs (each reshuffled, not the last
    one repeated); fewer steps plan fewer (num_epochs 1000 with max_steps 2 plans one epoch)."""
    return max(1, min(MAX_SHUFFLES, math.ceil(run_steps / max(1, steps_per_epoch))))


def planned_epoch(epoch: int, planned: int) -> int:
    """The planned shuffle epoch `epoch` walks: its own, or past MAX_SHUFFLES the planned ones in turn (one rule
    for the trainer's batches and the estimate's count)."""
    return epoch % planned


def plan_steps(lengths: list[int], *, examples_per_step: int, num_epochs: int, seed: int,
               token_budget: int | None, micro_batch_size: int, multiple_of: int = 1) -> StepPlan:
    """Shuffles per epoch (seeded), groups into optimizer steps, cuts steps into micro-batches.

    token_budget None: classic fixed micro-batches of micro_batch_size examples.
    multiple_of: the number of data-parallel ranks; every step has a multiple of it micro-batches
    (rank k takes micro-batches k, k+N, ...), so each rank accumulates the same count.
    """
    n = len(lengths)
    epochs_order = []
    for e in range(num_epochs):
        order = list(range(n))
        random.Random(seed * 1000 + e).shuffle(order)
        steps = [order[i:i + examples_per_step] for i in range(0, n, examples_per_step)]
        epochs_order.append(steps)
    if token_budget is None:
        per_step = math.ceil(examples_per_step / micro_batch_size)
        per_step = math.ceil(per_step / multiple_of) * multiple_of
        epochs = [[_split_to([s[i:i + micro_batch_size] for i in range(0, len(s), micro_batch_size)],
                             lengths, min(per_step, len(s))) for s in steps] for steps in epochs_order]
        return StepPlan(epochs, per_step, examples_per_step)
    # Pass 1: how many micro-batches the fullest step needs; every step then uses that many
    # (the Trainer's accumulation count is fixed), balanced by tokens.
    needed = 1
    for steps in epochs_order:
        for s in steps:
            needed = max(needed, len(_bins_needed([lengths[i] for i in s], token_budget)))
    needed = math.ceil(needed / multiple_of) * multiple_of
    epochs = []
    for steps in epochs_order:
        out_steps = []
        for s in steps:
            ls = [lengths[i] for i in s]
            bins = _split_to(_bins_needed(ls, token_budget), ls, min(needed, len(s)))
            out_steps.append([[s[i] for i in b] for b in bins])
        epochs.append(out_steps)
    return StepPlan(epochs, needed, examples_per_step)


class PlannedMicroBatches:
    """A map-style dataset whose item k is micro-batch k of the current epoch's plan.

    The Trainer reads it sequentially (see `PlanSampler`); `set_epoch` switches plans.
    Every epoch has the same number of micro-batches (full steps have
    `micro_batches_per_step`, the last partial step the same count in every epoch),
    so the Trainer's step arithmetic holds across epochs.
    """

    def __init__(self, examples: list, plan: StepPlan):
        self.examples = examples
        self.plan = plan
        self.epoch = 0
        self._flat = plan.flat(0)

    def set_epoch(self, epoch: int) -> None:
        """The plan holds every epoch the run walks up to MAX_SHUFFLES (epochs_to_plan); later ones walk them in
        turn (planned_epoch), as the estimate counts them."""
        if epoch < 0:
            raise IndexError(f"epoch {epoch}")
        self.epoch = epoch
        self._flat = self.plan.flat(planned_epoch(epoch, len(self.plan.epochs)))

    def __len__(self) -> int:
        return len(self._flat)

    def __getitem__(self, k: int) -> list:
        return [self.examples[i] for i in self._flat[k]]


class PlanSampler:
    """Sequential order over the plan's micro-batches; set_epoch forwards to the dataset."""

    def __init__(self, dataset: PlannedMicroBatches):
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        return iter(range(len(self.dataset)))


class Collator:
    """Turns a list of items (examples, or micro-batches of examples) into model inputs.

    pack=True: one row, position_ids restarting per example, no attention_mask,
    the first label of each example -100 so no label leaks across a boundary.
    pack=False: rows padded to the longest; padding masked by position (pad may equal EOS).

    Counts tokens for the tokens/s metric without a host sync. The data loader runs ahead of
    training (prefetch), so training micro-batches are queued here and `consume()`d by the
    trainer as it actually trains on them; evaluation batches (single examples) are not counted.
    """

    def __init__(self, pad_id: int, pack: bool, pad_multiple: int = 0):
        self.pad_id = pad_id
        self.pack = pack
        # packed rows padded up to a multiple of this many tokens, so a few lengths repeat (CUDA graphs replay
        # one graph per length): the padding is one more example of pad tokens, attending only to itself, with
        # no label, and not counted as tokens seen.
        self.pad_multiple = pad_multiple
        self.tokens_seen = 0
        self.trained_tokens_seen = 0
        self._pending: deque[tuple[int, int]] = deque()

    def consume(self) -> None:
        if self._pending:
            tokens, trained = self._pending.popleft()
            self.tokens_seen += tokens
            self.trained_tokens_seen += trained

    def __call__(self, items: list[TokenizedExample | list[TokenizedExample]]) -> dict[str, torch.Tensor]:
        examples: list[TokenizedExample] = []
        for it in items:
            examples.extend(it if isinstance(it, list) else [it])
        if items and isinstance(items[0], list):
            self._pending.append((sum(len(e.input_ids) for e in examples), sum(e.trained_tokens for e in examples)))
        return self._packed(examples) if self.pack else self._padded(examples)

    def _packed(self, examples: list[TokenizedExample]) -> dict[str, torch.Tensor]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        for e in examples:
            ids += e.input_ids
            labels += [IGNORE_INDEX] + list(e.labels[1:])
            pos += list(range(len(e.input_ids)))
        short = -len(ids) % self.pad_multiple if self.pad_multiple else 0
        if short:
            ids += [self.pad_id] * short
            labels += [IGNORE_INDEX] * short
            pos += list(range(short))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([pos])}

    def _padded(self, examples: list[TokenizedExample]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(e.input_ids) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
