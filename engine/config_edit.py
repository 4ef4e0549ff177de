"""Writing settings into the user's own config file without losing anything they wrote.

ruamel.yaml's round-trip mode keeps comments, key order and quoting: the wizard's save (ctrl+s), a finding's fix
applied from the wizard and `lorapilot inspect-data --fix` all change the file through here, and only the keys
that changed. A file that did not load cleanly is never overwritten (its values would be replaced by defaults).
"""

from __future__ import annotations

import io
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

    value = _as_written(value)
    head, _, tail = key.partition(".")
    if not tail:
        doc[head] = value
        return
    section = doc.get(head)
    if section is None or not hasattr(section, "keys"):
        section = CommentedMap()
        doc[head] = section
    section[tail] = value


def _as_written(value: Any) -> Any:
    """`value` as ruamel should write it for the config's own reader to read it back as the same value.

    ruamel writes YAML 1.2, where yes, no, on, off and 1:30 are text, and leaves them unquoted; the config is read
    by PyYAML (YAML 1.1: true, false, false, 90). A run_name `no` or a sample prompt `Yes` came back as a bool,
    and the file no longer loaded. Such text is written quoted."""
    import yaml
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    if isinstance(value, str):
        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        return value if same else SingleQuotedScalarString(value)
    if isinstance(value, list):
        return [_as_written(v) for v in value]
    return value


def _dump(doc: Any) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    """Through a temporary file of its own (rundir.replace_file): `.NAME.tmp` beside it was the user's to lose."""
    from engine.rundir import replace_file

    replace_file(path, text.encode("utf-8"))


def apply_settings(path: str | Path, changes: dict[str, Any]) -> list[str]:
    """Set dotted keys in the config file at `path`, keeping everything else; 'key: old -> new' per change.

    The result must still validate: a change the schema refuses raises ConfigError and writes nothing. What is
    validated is the text about to be written, read as `load_config` will read it (PyYAML), not ruamel's reading
    of it: the two differ on YAML 1.1's words (`packing: yes` is true to the one, text to the other).
    """
    from engine.config import config_from_dict
    from engine.config_file import parse_yaml_config

    p = Path(path)
    doc = _read(p)
    before = {k: get_path(doc, k) for k in changes}
    for key, value in changes.items():
        _put(doc, key, value)
    text = _dump(doc)
    config_from_dict(parse_yaml_config(text, p), source=str(p))  # refuse before writing, naming the key
    _write_atomically(p, text)
    return [_change_line(k, before[k], v) for k, v in changes.items()]


def _change_line(key: str, before: Any, after: Any) -> str:
    return f"{key}: {'(default)' if before is None else _said(before)} -> {_said(after)}"


def _said(value: Any) -> str:
    """A value in a 'key: old -> new' line as the file spells it: false, [no, on], not Python's False, ['no', 'on']."""
    from engine.errors import yaml_text

    return value if isinstance(value, str) else yaml_text(_plain(value))


def _plain(value: Any) -> Any:
    """ruamel's containers as plain ones (a CommentedSeq is a list)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list) else value


def save_into(cfg: Any, path: str | Path) -> list[str]:
    """Write `cfg` to `path`. A new file gets the whole config; an existing one only the keys whose value differs,
    its comments and order kept. Returns what changed in an existing file ([] for a new one or no change).

    Raises ConfigError, writing nothing, when the existing file does not load cleanly: it is the user's, and
    replacing it with what the wizard could read of it would lose the rest.
    """
    from engine.config import load_config, paths_from, save_config

    p = Path(path)
    cfg = paths_from(cfg, p.parent)
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


def save_changes(cfg: Any, path: str | Path) -> list[str]:
    """What save_into would change in the existing config file at `path` ('key: old -> new', as apply_settings says
    them), writing nothing: for asking first. ConfigError when the file does not load cleanly (save_into refuses it)."""
    from engine.config import load_config, paths_from

    p = Path(path)
    changes = _changes(paths_from(cfg, p.parent), load_config(p))
    doc = _read(p) if changes else None
    return [_change_line(k, get_path(doc, k), v) for k, v in changes.items()]


def edited_text(source: str | Path, cfg: Any, folder: str | Path) -> str:
    """The text of the config file `source` with each field whose value is not `cfg`'s set to it, for a file written
    in `folder` (a relative path that would read as another file from there is written as `cfg` holds it, through
    paths_from): the user's comments, key order and every other key kept. ConfigError when `source` does not load
    cleanly, or when the edited text would not read back as `cfg`."""
    from engine.config import _resolve_relative_paths, config_from_dict, paths_from
    from engine.config_file import read_yaml_config, parse_yaml_config

    src, where = Path(source), Path(folder)
    cfg = paths_from(cfg, where)

    def as_in_folder(raw: Any) -> Any:   # read as load_config reads a file in `folder`
        read = config_from_dict(raw, source=str(src))
        _resolve_relative_paths(read, where)
        return read

    changes = _changes(cfg, as_in_folder(read_yaml_config(src)))   # first: its checks (depth, aliases) before ruamel's
    doc = _read(src)
    for key, value in changes.items():
        _put(doc, key, value)
    text = _dump(doc)
    left = _changes(cfg, as_in_folder(parse_yaml_config(text, src)))
    if left:
        raise ConfigError(f"{src}: edited, it does not read back as the config to write", problems=sorted(left))
    return text


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

