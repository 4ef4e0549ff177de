"""The two yes/no dialogs (tui.screens.confirm.Confirm): the safe answer has the focus, so Enter picks it; y, the
yes button and n or escape answer as they say."""

from __future__ import annotations

import pytest
from textual.app import App

from tui.screens.confirm_replace import ConfirmReplace
from tui.screens.confirm_stop import ConfirmStop

DIALOGS = {"replace": lambda: ConfirmReplace("/tmp/c.yaml", ["training.max_steps: 4 -> 8"]),
           "stop": lambda: ConfirmStop("run-1", 40)}


@pytest.mark.parametrize("keys, answer", [(("enter",), False), (("y",), True), (("n",), False), (("escape",), False),
                                          (("click-yes",), True)])
@pytest.mark.parametrize("dialog", list(DIALOGS))
async def test_a_dialog_answers_safe_on_enter_and_yes_only_when_asked(dialog, keys, answer):
    answers: list[bool | None] = []
    app: App = App()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = DIALOGS[dialog]()
        app.push_screen(screen, answers.append)
        await pilot.pause()
        assert app.focused is not None and app.focused.id == screen.SAFE_ID
        for key in keys:
            if key == "click-yes":
                await pilot.click(f"#{screen.YES_ID}")
            else:
                await pilot.press(key)
        await pilot.pause()
    assert answers == [answer]
