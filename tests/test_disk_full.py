"""A full disk while writing what the user asked for: a clear message naming where (exit 2), nothing half-written."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from engine.errors import UserError


@pytest.mark.parametrize("how", ["oserror", "copytree"])
def test_an_export_onto_a_full_disk_says_so(tmp_path, how):
    """`lorapilot export RUN --out /full/x` printed shutil.Error's traceback (one '[Errno 28] No space left on device'
    tuple per file of the adapter), exit 1; now a UserError naming OUT and what to do, the hidden folder removed."""
    from engine.export.merge import writing

    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        with writing(out) as tmp:
            (tmp / "adapter_config.json").write_text("{}")
            if how == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "adapter_model.safetensors"))
            raise shutil.Error([("src/a", str(tmp / "a"), "[Errno 28] No space left on device: 'src/a' -> 'a'")])
    assert str(e.value).startswith(f"{out}: no space left on device"), str(e.value)
    assert "free space" in e.value.fix and "--out" in e.value.fix
    assert os.listdir(tmp_path) == []   # no OUT, no hidden .out.partial-*


def test_another_export_error_is_not_called_a_full_disk(tmp_path):
    from engine.export.merge import writing

    with pytest.raises(OSError):
        with writing(tmp_path / "out"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert os.listdir(tmp_path) == []


# What torch.save raises when the disk fills under its zip writer: no errno, no "No space left" (measured: a demo run
# on a 1.5 MB tmpfs failed its first checkpoint so, and status.json's error said only this).
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 580480 vs 580372"


def test_a_checkpoint_cut_by_a_full_disk_is_said_to_be_one(tmp_path, monkeypatch):
    """A run whose checkpoint filled the disk failed with 'RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos 580480 vs 580372' and no hint: now 'no space left on device' and the free-space hint, where the
    disk has no room left; the same error on a disk with room is not called a full disk."""
    from collections import namedtuple

    import engine.rundir as rundir

    usage = namedtuple("usage", "total used free")
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    err = RuntimeError(TORCH_SHORT_WRITE)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 4096))
    assert rundir.disk_full_path(err, ckpts) == str(ckpts)
    assert rundir.disk_full_path(err, ckpts / "checkpoint-2" / "optimizer.pt") == str(ckpts / "checkpoint-2" /
                                                                                         "optimizer.pt")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage(10**9, 10**8, 9 * 10**8))
    assert rundir.disk_full_path(err, ckpts) is None
    assert rundir.disk_full_path(RuntimeError("CUDA error"), ckpts) is None
