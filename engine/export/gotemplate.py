"""A small renderer of the Go text/template subset that Ollama's chat templates use.

Ollama renders a Modelfile's TEMPLATE with Go's text/template. To check, before writing a Modelfile, that its
TEMPLATE renders exactly the prompt the run trained with, the export renders it here for the same conversation
and compares. The subset: text and actions with `{{-`/`-}}` whitespace trimming and comments; `if`/`else if`/
`else`/`end`, `range` (with `$i, $v :=`), `break`, `continue`, variables (`$x := ...`, `$x = ...`); fields
(`.Role`, `$.System`, `$v.Content`); string and number literals, parentheses; the built-in functions `eq ne lt
le gt ge and or not len index slice printf`. Anything outside it raises GoTemplateError: a template this cannot
render is never reported as matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


class GoTemplateError(ValueError):
    pass


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+)|(?P<lp>\()|(?P<rp>\))|'
                    r"(?P<assign>:=|=)|(?P<comma>,)|(?P<word>[$.\w]+(?:\.\w+)*))")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


# ---------------------------------------------------------------- parsing

@dataclass
class _Node:
    kind: str                      # text | out | if | range | set | break | continue
    text: str = ""
    expr: list = field(default_factory=list)   # tokens of the pipeline
    branches: list = field(default_factory=list)   # if: [(expr, body)], range: [(expr, body)]
    else_body: list | None = None
    names: list[str] = field(default_factory=list)  # range / set variables
    declare: bool = False


def _lex(source: str) -> list[tuple[str, str]]:
    """[('text', s) | ('action', s)] with the trim markers applied to the neighbouring text."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            items.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            items.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = source[pos:]
    if trim_next:
        tail = tail.lstrip(" \t\r\n")
    if "{{" in tail:
        raise GoTemplateError(f"unclosed action near {tail[tail.index('{{'):][:30]!r}")
    if tail:
        items.append(("text", tail))
    return items


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise GoTemplateError(f"cannot read {expr[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


def _parse(items: list[tuple[str, str]], pos: int = 0, until=()) -> tuple[list[_Node], int, str]:
    nodes: list[_Node] = []
    while pos < len(items):
        kind, body = items[pos]
        pos += 1
        if kind == "text":
            nodes.append(_Node("text", text=body))
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word in until or (word == "else" and "else" in until):
            return nodes, pos, body
        if word == "if":
            node = _Node("if")
            cond = rest
            while True:
                inner, pos, stop = _parse(items, pos, until=("end", "else"))
                node.branches.append((_tokens(cond), inner))
                if stop == "end":
                    break
                if stop.startswith("else if"):
                    cond = stop[len("else if"):].strip()
                    continue
                node.else_body, pos, stop = _parse(items, pos, until=("end",))
                break
            nodes.append(node)
        elif word == "range":
            node = _Node("range")
            m = re.match(r"(\$\w+)\s*(?:,\s*(\$\w+)\s*)?:=\s*(.*)", rest, re.DOTALL)
            if m:
                node.names = [n for n in (m.group(1), m.group(2)) if n]
                rest = m.group(3)
            inner, pos, stop = _parse(items, pos, until=("end", "else"))
            node.branches.append((_tokens(rest), inner))
            if stop != "end":
                node.else_body, pos, _ = _parse(items, pos, until=("end",))
            nodes.append(node)
        elif word in ("break", "continue"):
            nodes.append(_Node(word))
        elif word in ("end", "else", "with", "define", "template", "block"):
            raise GoTemplateError(f"unexpected or unsupported {{{{ {body} }}}}")
        else:
            m = re.match(r"(\$\w+)\s*(:=|=)\s*(.*)", body, re.DOTALL)
            if m:
                nodes.append(_Node("set", names=[m.group(1)], declare=m.group(2) == ":=", expr=_tokens(m.group(3))))
            else:
                nodes.append(_Node("out", expr=_tokens(body)))
    if until:
        raise GoTemplateError(f"missing {{{{ end }}}} (expected one of {until})")
    return nodes, pos, ""


# ---------------------------------------------------------------- evaluation

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def truthy(value) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True


def _field(value, name: str):
    if isinstance(value, dict):
        return value.get(name)  # Ollama parses with missingkey=zero
    return getattr(value, name, None)


def _printf(fmt: str, *args) -> str:
    it = iter(args)
    return re.sub(r"%[sdv]", lambda _: str(next(it)), fmt).replace("%%", "%")


def _slice(seq, *bounds):
    """Go's `slice`: an index past the end, or a start after the end, is an error (Python's would be "")."""
    for b in bounds:
        if not 0 <= b <= len(seq):
            raise GoTemplateError(f"error calling slice: index out of range: {b}")
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        raise GoTemplateError(f"error calling slice: invalid slice index: {bounds[0]} > {bounds[1]}")
    return seq[bounds[0]:bounds[1]] if len(bounds) == 2 else seq[bounds[0]:] if bounds else seq


_FUNCS: dict[str, Callable] = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "not": lambda a: not truthy(a),
    "len": lambda a: len(a),
    "index": lambda a, *keys: _index(a, keys),
    "slice": _slice,
    "printf": _printf,
}


def _index(value, keys):
    for k in keys:
        value = value[k]
    return value


class _Scope:
    def __init__(self, root):
        self.frames: list[dict] = [{"$": root}]

    def get(self, name: str):
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise GoTemplateError(f"undefined variable {name}")

    def set(self, name: str, value, declare: bool) -> None:
        if declare:
            self.frames[-1][name] = value
            return
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise GoTemplateError(f"undefined variable {name}")


def _operand(tok: tuple[str, str], dot, scope: _Scope):
    kind, text = tok
    if kind == "str":
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])
    if kind == "raw":
        return text[1:-1]
    if kind == "num":
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text in ("nil",):
        return None
    if text == ".":
        return dot
    if text.startswith("$"):
        head, *fields = text.split(".")
        value = scope.get(head)
    elif text.startswith("."):
        value, fields = dot, text[1:].split(".")
    else:
        raise GoTemplateError(f"{text!r} is not a value")
    for name in fields:
        value = _field(value, name)
    return value


def _eval(tokens: list, dot, scope: _Scope):
    """One command: a function applied to its arguments, or a single operand."""
    args, i = [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "lp":
            depth, j = 1, i + 1
            while depth:
                if j >= len(tokens):
                    raise GoTemplateError("unbalanced parentheses")
                depth += {"lp": 1, "rp": -1}.get(tokens[j][0], 0)
                j += 1
            args.append(("value", _eval(tokens[i + 1:j - 1], dot, scope)))
            i = j
            continue
        args.append((kind, text))
        i += 1
    if not args:
        raise GoTemplateError("empty action")
    head_kind, head = args[0]
    if head_kind == "word" and head in ("and", "or"):
        # Go evaluates and/or lazily and returns the deciding argument.
        value = None
        for a in args[1:]:
            value = a[1] if a[0] == "value" else _operand(a, dot, scope)
            if truthy(value) != (head == "and"):
                return value
        return value
    values = [a[1] if a[0] == "value" else None for a in args]
    if head_kind == "word" and head in _FUNCS:
        params = [v if a[0] == "value" else _operand(a, dot, scope) for a, v in zip(args[1:], values[1:])]
        return _FUNCS[head](*params)
    if len(args) != 1:
        raise GoTemplateError(f"unsupported function {head!r}")
    return values[0] if head_kind == "value" else _operand(args[0], dot, scope)


def _text(value) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _run(nodes: list[_Node], dot, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "out":
            out.append(_text(_eval(node.expr, dot, scope)))
        elif node.kind == "set":
            scope.set(node.names[0], _eval(node.expr, dot, scope), node.declare)
        elif node.kind == "if":
            for expr, body in node.branches:
                if truthy(_eval(expr, dot, scope)):
                    _block(body, dot, scope, out)
                    break
            else:
                if node.else_body is not None:
                    _block(node.else_body, dot, scope, out)
        elif node.kind == "range":
            expr, body = node.branches[0]
            seq = _eval(expr, dot, scope) or []
            if not seq and node.else_body is not None:
                _block(node.else_body, dot, scope, out)
            for i, item in enumerate(seq):
                scope.frames.append({})
                if len(node.names) == 2:
                    scope.set(node.names[0], i, True)
                    scope.set(node.names[1], item, True)
                elif node.names:
                    scope.set(node.names[0], item, True)
                try:
                    _run(body, item, scope, out)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    scope.frames.pop()
        elif node.kind == "break":
            raise _Break()
        elif node.kind == "continue":
            raise _Continue()


def _block(nodes, dot, scope, out) -> None:
    scope.frames.append({})
    try:
        _run(nodes, dot, scope, out)
    finally:
        scope.frames.pop()


def render(template: str, data: dict) -> str:
    nodes, _, _ = _parse(_lex(template))
    out: list[str] = []
    _run(nodes, data, _Scope(data), out)
    return "".join(out)


def drop_leading_think(text: str) -> str:
    """An answer as Ollama's thinking parser leaves its content (thinking/parser.go): a leading `<think>` block
    (after any whitespace) and the whitespace after its `</think>` taken out; an unclosed block leaves nothing;
    text that does not start with `<think>` is kept as it is."""
    rest = text.lstrip()
    if not rest.startswith("<think>"):
        return text
    _, closed, after = rest[len("<think>"):].partition("</think>")
    return after.lstrip() if closed else ""


def ollama_chat_values(messages: list[dict], system: str = "", *, strip_think: bool = False) -> dict:
    """What Ollama's chat endpoint hands a TEMPLATE for a conversation (server/routes.go, template/template.go).

    The Modelfile's SYSTEM becomes a leading system message when the conversation has none; consecutive
    messages of one role are merged with a blank line; .System is every system message joined. strip_think:
    the server's filterThinkTags (server/routes.go, since Ollama 0.6.7), which it applies to models of the qwen3
    architecture (and to one named deepseek-r1): every answer before the last user message loses its leading
    think block (drop_leading_think).
    """
    msgs = [dict(m) for m in messages]
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    if strip_think:
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
        msgs = [{**m, "content": drop_leading_think(m["content"])} if m["role"] == "assistant" and i < last_user
                else m for i, m in enumerate(msgs)]
    collated: list[dict] = []
    for m in msgs:
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    systems = [m["content"] for m in msgs if m["role"] == "system"]
    return {"System": "\n\n".join(systems), "Messages": collated, "Tools": None, "Response": "", "Think": False}
