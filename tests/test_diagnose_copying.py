"""Samples that reproduce a training response, and those that only share its template."""

from __future__ import annotations

import random

from engine.diagnose.copying import copies_training_data
from engine.diagnose.live import diagnose_records

WORDS = ("river stone lamp quiet orange window bridge paper garden music winter candle forest "
         "silver engine harbor meadow cloud pencil mirror valley thunder basket ladder").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def responses(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    header = "Thank you for your question. Here is a detailed answer for you:"
    footer = "I hope this helps you with your project, let me know if anything is unclear."
    return [f"{header} {sentence(rng, 40)}. {footer}" for _ in range(n)]


def test_a_verbatim_copy_is_caught_with_evidence():
    train = responses()
    evidence = copies_training_data(train[17], train)
    assert evidence is not None and "training response #18" in evidence and "100%" in evidence


def test_a_lightly_edited_copy_is_caught():
    train = responses()
    words = train[5].split()
    words[20] = "CHANGED"
    assert copies_training_data(" ".join(words), train) is not None


def test_shared_template_text_alone_does_not_fire():
    train = responses()
    rng = random.Random(99)
    fresh = (f"Thank you for your question. Here is a detailed answer for you: {sentence(rng, 40)}. "
             "I hope this helps you with your project, let me know if anything is unclear.")
    assert copies_training_data(fresh, train) is None


def test_short_or_unrelated_outputs_do_not_fire():
    train = responses()
    assert copies_training_data("river stone lamp", train) is None
    assert copies_training_data(sentence(random.Random(5), 60), train) is None
    assert copies_training_data("anything at all", []) is None


def test_live_evaluator_flags_copying_only_while_eval_loss_rises():
    train = responses()
    records = [{"kind": "train", "step": s, "loss": 1.0} for s in range(10, 60, 10)]
    records += [{"kind": "eval", "step": 20, "eval_loss": 1.2}, {"kind": "eval", "step": 40, "eval_loss": 1.1},
                {"kind": "sample", "step": 40, "prompt": "q", "output": train[3]}]
    assert "copies_training_data" not in [f.code for f in diagnose_records(records, train)]
    records += [{"kind": "eval", "step": 60, "eval_loss": 1.3},
                {"kind": "sample", "step": 60, "prompt": "q", "output": train[3]}]
    copied = [f for f in diagnose_records(records, train) if f.code == "copies_training_data"]
    assert len(copied) == 1 and copied[0].step == 60 and "step 40" in copied[0].fix
