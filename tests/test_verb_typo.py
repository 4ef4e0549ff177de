"""A mistyped verb (`lorapilot trian`) or one from another tool (`lorapilot status`) got argparse's list of every
verb, with nothing to say which was meant; a choice likewise (`export --for ollma`). The refusal names it now, and
never a word that merely looks alike (`status` is not `stop`, which would stop a run)."""
from __future__ import annotations

import pytest

from engine.cli import main
from engine.errors import EXIT_BAD_INPUT


@pytest.mark.parametrize("argv, hint", [
    (["trian", "c.yaml"], "invalid choice: 'trian'; did you mean 'train'?"),
    (["status"], "invalid choice: 'status'; did you mean `lorapilot runs`?"),
    (["resume", "runs/a"], "did you mean `lorapilot train --resume RUN_DIR`?"),
    (["export", "runs/a", "--for", "ollma"], "invalid choice: 'ollma'; did you mean 'ollama'?"),
    (["top", "runs/a"], "did you mean `lorapilot monitor RUN_DIR`?"),    # watching a run, never `stop`
    (["run", "c.yaml"], "did you mean `lorapilot train CONFIG`?"),
])
def test_a_mistyped_verb_or_choice_names_the_one_meant(argv, hint, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == EXIT_BAD_INPUT
    assert hint in " ".join(capsys.readouterr().err.split())   # wrapped for the terminal


def test_a_word_only_like_a_verb_gets_the_list_alone(capsys):
    with pytest.raises(SystemExit):
        main(["stats"])
    err = " ".join(capsys.readouterr().err.split())
    assert "invalid choice: 'stats' (choose from 'train'" in err and "did you mean" not in err


@pytest.mark.parametrize("word", ["step", "shop", "pstop", "stopp", "sotp"])
def test_stop_is_never_guessed(word, capsys):
    """`stop` ends a run: a word a letter from it gets the list, never the suggestion to type it."""
    with pytest.raises(SystemExit):
        main([word, "runs/a"])
    assert "did you mean 'stop'" not in " ".join(capsys.readouterr().err.split())
