"""Reading a config file's YAML strictly: what PyYAML accepts silently is refused here, naming the line.

- A key given twice (`learning_rate` twice, two `training:` sections): PyYAML keeps the last without a word,
  so half of what the user wrote is ignored.
- Anchors and aliases that expand to a huge value (a "billion laughs" bomb): PyYAML builds them as shared
  references in microseconds, but anything that walks or prints the value (a validation message) then runs
  for minutes and gigabytes. The expanded size is counted on the node graph, before anything is built.
- Deep nesting, huge files, unreadable or binary files: a ConfigError naming the file, never a traceback.

engine/config.py validates the mapping read here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, quote

# A full config is a few KB; sample_prompts may make it bigger, never megabytes.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Values (scalars, lists, mappings) a config may hold once aliases are expanded: a config has ~60 keys, and
# even thousands of sample prompts stay far below this.
MAX_EXPANDED_VALUES = 100_000
# Nested [ ] / { } a config may have (a real one has 2 or 3). PyYAML's scanner takes time quadratic in the
# nesting (it rechecks every open level at each token): 20,000 levels take 5 s, a few MB of brackets hours.
MAX_FLOW_DEPTH = 100


def read_yaml_config(path: Path) -> Any:
    """The YAML document of a config file (not yet validated), or a ConfigError naming file and line."""
    return parse_yaml_config(_read_text(path), path)


def read_as_written(path: Path) -> Any:
    """What a config file that `read_yaml_config` refuses says, as far as it can be read safely, or None.

    For the wizard, which opens such a file with its values in the fields as written and the problems beside
    them: a key given twice keeps its last value, `seed: 042` stays the text 042 (not YAML's octal 34); a file
    nested too deeply, an alias bomb, bad syntax or binary gives None (PyYAML's own reading of a file nested
    20,000 deep crashed the wizard with a RecursionError)."""
    try:
        return parse_yaml_config(_read_text(path), path, as_written=True)
    except ConfigError:
        return None


def parse_yaml_config(text: str, path: Path, *, as_written: bool = False) -> Any:
    """The YAML document in `text`, read as `read_yaml_config` reads the file at `path` (named in errors): what a
    writer checks its text against before it replaces the file. `as_written`: see read_as_written."""
    import yaml

    _check_flow_depth(text, path)
    loader = _loader_class(as_written)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node, path, loader, duplicates=not as_written)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: lists or mappings nested too deeply to read") from None
    finally:
        loader.dispose()


_LOADERS: dict[bool, Any] = {}

# Plain scalars YAML 1.1 (PyYAML) reads as numbers no one means: a leading 0 is octal (`seed: 042` is 34), colons
# are base 60 (`1:30` is 90). YAML 1.2 (ruamel, most other tools) reads 042 as 42 and 1:30 as text.
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def yaml11_number(text: str) -> str | None:
    """Why a plain scalar is a trap (the number YAML 1.1 makes of it, what to write instead), or None."""
    digits = text.replace("_", "")
    if _OCTAL.fullmatch(text) and int(digits, 8) != int(digits, 10):   # 07 is 7 either way
        return (f"a leading 0 makes it octal to YAML ({int(digits, 8)}); write {int(digits, 10)}, or {quote(text)} "
                "in quotes for text")
    if _BASE_60.fullmatch(text):
        import yaml

        return f"YAML reads it as base 60 ({yaml.safe_load(text)}); write the number, or {quote(text)} in quotes for text"
    return None


def _loader_class(as_written: bool = False):
    """yaml.SafeLoader whose values that fail to build (an integer of 5,000 digits, the date 2024-13-45) say
    where they are, as the parser's own errors do, and that refuses a number YAML 1.1 reads as no one means
    (yaml11_number), or with `as_written` keeps it as its text; built on first use so that yaml loads lazily."""
    if as_written not in _LOADERS:
        import yaml

        numbers = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

        class Loader(yaml.SafeLoader):
            def construct_object(self, node, deep=False):
                try:
                    if isinstance(node, yaml.ScalarNode) and node.tag in numbers:
                        trap = yaml11_number(node.value)
                        if trap and as_written:
                            return node.value
                        if trap:
                            raise yaml.constructor.ConstructorError(None, None, f"cannot read {quote(node.value)}: "
                                                                    f"{trap}", node.start_mark)
                    return super().construct_object(node, deep=deep)
                except (ValueError, OverflowError) as e:
                    value = quote(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
                    reason = str(e).split(";")[0]   # not Python's advice on sys.set_int_max_str_digits
                    raise yaml.constructor.ConstructorError(None, None, f"cannot read {value}: {reason}",
                                                            node.start_mark) from None
        _LOADERS[as_written] = Loader
    return _LOADERS[as_written]


def _read_text(path: Path) -> str:
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, expected a YAML config file")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size / 2**20:.0f} MiB is far too big for a config file (a config is a "
                              "few KB)", fix="check that this is the config you meant")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied", fix="check the file's owner and mode (ls -l)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    if b"\x00" in data:
        raise ConfigError(f"{path}: is not a text file (expected YAML)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not a text file (expected YAML)") from None


def _check_flow_depth(text: str, path: Path) -> None:
    """Refuses [ ] / { } nested deeper than MAX_FLOW_DEPTH, found without the YAML scanner.

    Quoted strings and comments are skipped; a bracket inside a plain (unquoted) scalar is counted, which
    can only overstate the depth of a config that is nested dozens of levels already.
    """
    import re

    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for m in re.finditer(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|(?:^|(?<=\s))#[^\n]*|[\[\]{}]", text, re.M):
        c = m.group()
        if c in ("[", "{"):
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                line = text.count("\n", 0, m.start()) + 1
                raise ConfigError(f"{path}: line {line}: invalid YAML: lists or mappings nested more than "
                                  f"{MAX_FLOW_DEPTH} deep")
        elif c in ("]", "}"):
            depth = max(0, depth - 1)


def _check_tree(root, path: Path, loader, *, duplicates: bool = True) -> None:
    """Duplicate keys and oversized alias expansions, found on the composed nodes (nothing built yet)."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def expanded(node) -> int:
        """Values in node once every alias is expanded (an alias is the same node object, reached again)."""
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: an alias refers to the value that "
                              "contains it (a recursive structure)", fix="remove the alias")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(expanded(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(expanded(k) + expanded(v) for k, v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = total
        return total

    if expanded(root) > MAX_EXPANDED_VALUES:
        where, node = _largest_branch(root, sizes)
        raise ConfigError(f"{path}: line {node.start_mark.line + 1}: {where or 'the document'}: anchors and aliases "
                          f"expand to {sizes[id(node)]:,} values (at most {MAX_EXPANDED_VALUES:,})",
                          fix="write the value out, or remove the aliases (*name)")
    if duplicates:
        _check_duplicates(root, path, loader)


def _largest_branch(node, sizes: dict[int, int]) -> tuple[str, Any]:
    """The deepest mapping key whose value is too big: the culprit to name."""
    import yaml

    names: list[str] = []
    while isinstance(node, yaml.MappingNode) and node.value:
        key, value = max(node.value, key=lambda kv: sizes[id(kv[1])])
        if sizes[id(value)] <= MAX_EXPANDED_VALUES:
            break
        names.append(str(getattr(key, "value", "?"))[:80])
        node = value
    return ".".join(names), node


def _check_duplicates(root, path: Path, loader) -> None:
    import yaml

    seen_nodes: set[int] = set()
    todo: list[tuple[Any, str]] = [(root, "")]
    while todo:
        node, where = todo.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo += [(child, f"{where}[{i}]") for i, child in enumerate(node.value)]
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *base` overrides on purpose
                continue
            name = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{where}.{name}" if where else str(name)
            line = key_node.start_mark.line + 1
            if name is not None and name in first_line:
                raise ConfigError(f"{path}: line {line}: {dotted[:120]}: duplicate key (first at line "
                                  f"{first_line[name]}); YAML would keep only the last",
                                  fix="remove one of them, or merge the two sections")
            if name is not None:
                first_line[name] = line
            todo.append((value_node, dotted))
