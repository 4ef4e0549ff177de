"""Writing settings into the user's own config file without losing anything they wrote.

ruamel.yaml's round-trip mode keeps comments, key order and quoting: the wizard's save (ctrl+s), a finding's fix
applied from the wizard and `lorapilot inspect-data --fix` all change the file through here, and only the keys
that changed. A file that did not load cleanly is never overwritten (its values would be replaced by defaults).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from engine.config_paths import get_path
from engine.errors import ConfigError

# A finding's fix names its setting as "Set training.max_seq_length to 192" (engine/diagnose).
_SET = re.compile(r"\bSet (?P<key>[a-z_]+(?:\.[a-z_]+)?) to (?P<value>[^\s,;()]+)")


def fix_setting(fix: str) -> tuple[str, Any] | None:
    """The (dotted key, value) a finding's fix text sets, when it names one setting of the schema."""
    import yaml

    from engine.config import FIELDS

    for m in _SET.finditer(fix or ""):
        key, text = m.group("key"), m.group("value").rstrip(".")
        if key not in FIELDS:
            continue
        try:
            return key, yaml.safe_load(text)
        except yaml.YAMLError:
            return key, text
    return None


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip: comments, order, flow style and quotes survive a load and a dump
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a user's long line
    return y


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e})") from None
    from ruamel.yaml.error import YAMLError

    try:
        data = _yaml().load(text)
    except YAMLError as e:  # bad syntax, duplicate keys: the file is the user's to fix
        raise ConfigError(f"{path}: not valid YAML, left as it is ({str(e).splitlines()[0]})") from None
    if data is None:
        from ruamel.yaml.comments import CommentedMap
        data = CommentedMap()
    if not hasattr(data, "keys"):
        raise ConfigError(f"{path}: not a config mapping, left as it is")
    return data


def _put(doc: Any, key: str, value: Any) -> None:
    from ruamel.yaml.comments import CommentedMap

    head, _, tail = key.partition(".")
    if not tail:
        doc[head] = value
        return
    section = doc.get(head)
    if section is None or not hasattr(section, "keys"):
        section = CommentedMap()
        doc[head] = section
    section[tail] = value


def _write_atomically(path: Path, doc: Any) -> None:
    out = io.StringIO()
    _yaml().dump(doc, out)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def apply_settings(path: str | Path, changes: dict[str, Any]) -> list[str]:
    """Set dotted keys in the config file at `path`, keeping everything else; 'key: old -> new' per change.

    The result must still validate: a change the schema refuses raises ConfigError and writes nothing.
    """
    from engine.config import config_from_dict

    p = Path(path)
    doc = _read(p)
    before = {k: get_path(doc, k) for k in changes}
    for key, value in changes.items():
        _put(doc, key, value)
    config_from_dict(_plain(doc), source=str(p))  # refuse before writing, naming the key
    _write_atomically(p, doc)
    return [f"{k}: {'(default)' if before[k] is None else before[k]} -> {v}" for k, v in changes.items()]


def save_into(cfg: Any, path: str | Path) -> list[str]:
    """Write `cfg` to `path`. A new file gets the whole config; an existing one only the keys whose value differs,
    its comments and order kept. Returns what changed in an existing file ([] for a new one or no change).

    Raises ConfigError, writing nothing, when the existing file does not load cleanly: it is the user's, and
    replacing it with what the wizard could read of it would lose the rest.
    """
    from engine.config import load_config, save_config

    p = Path(path)
    if not p.exists():
        save_config(cfg, p)
        return []
    try:
        on_disk = load_config(p)
    except ConfigError as e:
        raise ConfigError(f"{p} did not load cleanly, so it is not overwritten; save to another file",
                          problems=[str(e)]) from None
    changes = _changes(cfg, on_disk)
    return apply_settings(p, changes) if changes else []


def _changes(cfg: Any, on_disk: Any) -> dict[str, Any]:
    """The fields whose value in `cfg` differs from `on_disk`'s, with `cfg`'s value as a user writes it."""
    from engine.config import FIELDS, as_written

    new, old = cfg.to_dict(), on_disk.to_dict()
    return {k: as_written(spec, get_path(new, k)) for k, spec in FIELDS.items() if get_path(new, k) != get_path(old, k)}


def holds(cfg: Any, path: str | Path) -> bool:
    """Whether the config file at `path` loads cleanly and sets every field as `cfg` does."""
    from engine.config import load_config

    try:
        return not _changes(cfg, load_config(Path(path)))
    except ConfigError:
        return False


def free_path(path: str | Path) -> Path:
    """`path` if nothing is there, else the first free `<stem>-2<suffix>`, `<stem>-3<suffix>`, ... beside it."""
    p = Path(path)
    n = 2
    while p.exists():
        p = p.with_name(f"{Path(path).stem}-{n}{p.suffix}")
        n += 1
    return p


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (what the validator expects)."""
    if hasattr(node, "items"):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
