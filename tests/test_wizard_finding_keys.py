"""A key on one finding applies that finding's fix, and only it, at 80x24: Review's checklist and the Dataset
step's Problems tab. tab reaches the findings, ↑↓ moves between them, enter applies the highlighted one's fix and
says what changed; a fix that is no single setting says so and changes nothing."""

from __future__ import annotations

import pytest

from tui.app import LorapilotApp
from tui.widgets.finding_blocks import FindingBlock
from wizard_pilot import settle, shown, type_into

SIZE = (80, 24)
pytestmark = pytest.mark.timeout(600)  # a hang guard only: the first settle waits for the tokenizer under load


async def tab_to_a_finding(pilot, limit: int = 12) -> FindingBlock:
    """tab as a user does until a finding has the focus (switching the Dataset step's tabs to Problems)."""
    app = pilot.app
    for _ in range(limit):
        await pilot.press("tab")
        if type(app.focused).__name__ == "ContentTabs":  # the Dataset step's tab strip
            await pilot.press("right", "right")
        if isinstance(app.focused, FindingBlock):
            return app.focused
    raise AssertionError(f"no finding reached with tab; focus on {app.focused!r}")


async def move_to(pilot, code: str) -> FindingBlock:
    """down or up, toward the finding as the user sees it above or below the focused one."""
    focused = pilot.app.focused
    assert isinstance(focused, FindingBlock), focused
    blocks = list(focused.parent.query_children(FindingBlock))
    target = next((b for b in blocks if b.finding is not None and b.finding.code == code), None)
    assert target is not None, f"no finding {code} listed"
    key = "down" if blocks.index(target) > blocks.index(focused) else "up"
    for _ in range(12):
        if pilot.app.focused is target:
            return target
        await pilot.press(key)
    raise AssertionError(f"no finding {code} reached with {key}; focus on {pilot.app.focused!r}")


async def footer_keys(pilot) -> list[str]:
    """The footer's keys, after asserting that every one is whole on screen, left of the palette key."""
    from textual.widgets._footer import FooterKey

    await pilot.pause(0.3)  # the footer recomposes after the focus moves
    keys = list(pilot.app.screen.query(FooterKey))
    palette = [k for k in keys if k.has_class("-command-palette")]
    limit = palette[0].region.x if palette else pilot.app.size.width
    cut = [k.description for k in keys if k not in palette and k.region.right > limit]
    assert not cut, f"cut at {pilot.app.size.width} columns: {cut}"
    return [k.key for k in keys]


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_enter_on_a_review_finding_applies_its_fix_only(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await type_into(pilot, "#field-training-warmup_ratio", "0")
        await type_into(pilot, "#field-training-max_grad_norm", "5")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert {"no_warmup", "no_grad_clipping", "few_target_tokens"} <= {f.code for f in s.findings}
        assert "enter applies its fix; ctrl+g applies them all" in shown(app, "#checklist")
        assert "ctrl+g" in await footer_keys(pilot)

        block = await tab_to_a_finding(pilot)
        # The focused finding's key is in the footer, whole at 80 columns (ctrl+g leaves it the room).
        assert app.screen.active_bindings["enter"].binding.description == "Apply fix"
        assert {"enter", "ctrl+l", "ctrl+q"} <= set(await footer_keys(pilot))

        # A fix that is no one setting: said, nothing changed.
        block = await move_to(pilot, "few_target_tokens")
        await pilot.press("enter")
        await settle(app, pilot)
        assert any("not one setting" in m and "whole answer" in m for m in messages(app)), messages(app)
        assert s.cfg.training.warmup_ratio == 0 and s.cfg.training.max_grad_norm == 5

        # This finding's fix, and only it; the checks run again without it.
        await move_to(pilot, "no_warmup")
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.cfg.training.warmup_ratio == 0.03 and s.raw["training.warmup_ratio"] == "0.03"
        assert s.cfg.training.max_grad_norm == 5
        assert "training.warmup_ratio 0 -> 0.03" in messages(app), messages(app)
        assert "no_warmup" not in {f.code for f in s.findings}
        assert "No warmup" not in shown(app, "#checklist")

        # The focus stays among the findings: the next one is a key away.
        block = await move_to(pilot, "no_grad_clipping")
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.cfg.training.max_grad_norm == 0.3
        assert "training.max_grad_norm 5 -> 0.3" in messages(app), messages(app)
        assert isinstance(app.focused, FindingBlock) and block.is_attached

        # The hyperparameters step shows the values applied on Review.
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen.query_one("#field-training-warmup_ratio").value == "0.03"
        assert app.screen.query_one("#field-training-max_grad_norm").value == "0.3"

        # The footer drops its padding only while the terminal is narrow: a wider pane gets it back.
        from textual.widgets import Footer
        assert app.screen.query_one(Footer).compact
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.3)
        assert not app.screen.query_one(Footer).compact
        await footer_keys(pilot)
        app.exit()


async def test_enter_on_a_problem_of_the_dataset_step_applies_its_fix(demo_model_dir):
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await type_into(pilot, "#field-dataset-validation_split", "0.01")   # 4 of 400 held out
        await settle(app, pilot)
        (small,) = [f for f in s.findings if f.code == "validation_too_small"]
        suggested = small.fix.split(" to ")[1].split()[0]

        await tab_to_a_finding(pilot)
        assert app.screen.query_one("#dataset-tabs").active == "tab-problems"
        await move_to(pilot, "validation_too_small")
        await pilot.press("enter")
        await settle(app, pilot)
        assert s.raw["dataset.validation_split"] == suggested and s.cfg.dataset.validation_split == float(suggested)
        assert f"dataset.validation_split 0.01 -> {suggested}" in messages(app), messages(app)
        # The field on this step shows it, and the data was split again with it.
        assert app.screen.query_one("#field-dataset-validation_split").value == suggested
        assert "validation_too_small" not in {f.code for f in s.findings}
        assert "held out for validation" not in shown(app, "#data-problems")
        # The list empties while the data is checked again: the focus waits above it, then comes back to the
        # finding now in that place, with every footer key (a removed block that kept it took them away).
        assert isinstance(app.focused, FindingBlock) and app.focused.is_attached
        assert {"enter", "ctrl+n", "ctrl+q"} <= set(await footer_keys(pilot))

        # The same on Review, where the list sits below the fold at 80x24: the view stays on the finding.
        await type_into(pilot, "#field-dataset-validation_split", "0.01")
        await pilot.press("ctrl+n", "ctrl+n")
        await settle(app, pilot)
        await tab_to_a_finding(pilot)
        await move_to(pilot, "validation_too_small")
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.pause(0.3)
        assert s.raw["dataset.validation_split"] == suggested
        assert isinstance(app.focused, FindingBlock) and app.focused.is_attached
        assert app.screen.query_one("#review-body").region.overlaps(app.focused.region), app.focused.region
        app.exit()
