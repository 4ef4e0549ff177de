"""Everything lorapilot reads from the environment, and the units and names shared across the engine.

Read on every call, never cached at import: tests and the CLI set variables after the modules are loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

GIB = 1024 ** 3


def mem_text(gib: float) -> str:
    """An amount of memory as every screen and note says it: GiB to two decimals; under 0.1 GiB in MiB, so a small
    model's figures do not read as a row of zeros ("peaks at 0.00 GiB")."""
    return f"{gib * 1024:.0f} MiB" if abs(gib) < 0.1 else f"{gib:.2f} GiB"

# The data shipped with lorapilot (model presets, GPUs, recipes, the speed table, the demo, serving templates):
# the top-level presets/ folder beside engine/ (an editable install and a checkout both keep that layout).
PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


def demo_config_word() -> str:
    """presets/demo.yaml as a command typed in the current folder must name it: so from lorapilot's own folder (the
    README's commands), else by its full path (`lorapilot train presets/demo.yaml` elsewhere: config file not found)."""
    from engine.errors import shell_word

    demo = PRESETS_DIR / "demo.yaml"
    try:
        here = Path("presets/demo.yaml").resolve() == demo
    except OSError:   # the working folder gone
        here = False
    return "presets/demo.yaml" if here else shell_word(demo)

# The data files a dataset path may name (also what a directory of them is searched for).
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

RUNS_ENV = "LORAPILOT_RUNS"
CACHE_ENV = "LORAPILOT_CACHE"
# Caps what training may use of each GPU, for a GPU shared with another job (or to try a smaller card's limit):
# the allocator refuses beyond it and every auto decision (memory, parallelism, packing budget) plans for it.
GPU_MEMORY_ENV = "LORAPILOT_GPU_MEMORY_GIB"
FAST_DECODE_ENV = "LORAPILOT_FAST_DECODE"
CPU_DDP_ENV = "LORAPILOT_DDP_CPU"  # data parallel on the CPU (gloo): tests of the multi-process path
# The monitor rings the terminal bell and sets the terminal title when a run ends; LORAPILOT_NOTIFY=0 turns it off.
NOTIFY_ENV = "LORAPILOT_NOTIFY"


def runs_root(configured: str | None = None) -> Path:
    """Where runs and sweeps are created: a config's runs_dir where it names another than the default, else
    $LORAPILOT_RUNS, else ./runs. A leading ~ is the user's home (YAML does not expand it: `runs_dir: ~/runs` made a
    folder named '~' in the working directory)."""
    chosen = configured if configured and configured != "runs" else os.environ.get(RUNS_ENV, "runs")
    return Path(chosen).expanduser()


def user_path(text: str) -> str:
    """A path given on the command line, with a leading ~ as the user's home: the shell expands ~ only where it is
    not quoted, and a path with a space is quoted (`--out "~/my exports"` wrote into a folder named '~' here).
    The type of every argparse argument that names a file or folder."""
    return os.path.expanduser(text)


def cache_root() -> Path:
    """lorapilot's own cache (the demo model, the app's log): $LORAPILOT_CACHE, else $XDG_CACHE_HOME/lorapilot."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lorapilot")
    return Path(base)


def visible_device_mask() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES' entries (-1 and blanks dropped), or None where it is not set."""
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return None
    return [d.strip() for d in mask.split(",") if d.strip() and d.strip() != "-1"]


def notify_on_end() -> bool:
    """Bell and terminal title when a watched run ends (on unless LORAPILOT_NOTIFY is 0, off, false or no)."""
    return os.environ.get(NOTIFY_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def cpu_ddp() -> bool:
    return bool(os.environ.get(CPU_DDP_ENV))


def process_ranks() -> tuple[int, int, int]:
    """(RANK, LOCAL_RANK, WORLD_SIZE) as torchrun sets them; (0, 0, 1) in a single process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_cache_dir() -> str:
    """Hugging Face's hub cache as huggingface_hub finds it (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
    XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub), read now: huggingface_hub reads it once, at import,
    and a test's or a trainer's environment set later would otherwise be looked up in the wrong folder."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    chosen = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(chosen))


def hub_token_env() -> str | None:
    """The hub token from HF_TOKEN or HUGGING_FACE_HUB_TOKEN; never written anywhere by us."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            return os.environ[var]
    return None
