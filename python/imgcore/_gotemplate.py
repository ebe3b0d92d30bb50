"""Docker's ``--format`` templates: Go's ``text/template`` plus docker/cli's functions, in pure Python.

One implementation for ``inspect -f``, ``images``/``history``/``ps --format`` and whatever comes later.

API::

    Template(text, *, missing_key="default")   # parsed once; InvalidTemplate on a syntax error
        .execute(data) -> str                  # InvalidTemplate on a run-time error
    render(text, data) -> str                  # Template(text) from a small cache, then execute (inspect -f)
    render_rows(fmt, rows, headers=None) -> str  # docker/cli's formatter.Context: "table ...", "json", plain
    tabwrite(text, ...) -> str                 # docker/cli's tabwriter (Go's elastic tabstops, runewidth)
    go_json(value) -> str                      # docker's {{json}}: json.Encoder with SetEscapeHTML(false)
    go_sprint(value) -> str                    # fmt.Sprint / {{.}}: map[a:1 b:2], [a b], <nil>, 1e+06

Semantics follow https://pkg.go.dev/text/template (actions, pipelines, variables, if/else if/with/else with/
range/else/break/continue, define/template/block, trim markers ``{{- `` `` -}}``, comments, raw strings, char and
number constants, the builtins and, or, not, len, index, slice, eq, ne, lt, le, gt, ge, print, printf, println,
html, js, urlquery; not ``call``, since a callable in the data is a method, see below) and docker/cli's
``templates`` package (json, split, join, title, lower, upper, pad, truncate;
https://docs.docker.com/engine/cli/formatting/).  ``render_rows`` is docker/cli's
``formatter.Context``: a format starting with ``table`` prints a header row (the same template run over the
header mapping with docker's ``HeaderFunctions``) and aligns the columns with ``tabwriter.NewWriter(out, 10, 1,
3, ' ', 0)``; ``json`` prints ``{{json .}}`` per row; the format is trimmed of spaces and a literal ``\\t``/``\\n``
(as typed in a shell) becomes a tab/newline, as docker does it (``render`` does not: ``inspect -f`` doesn't).

The data model (values are docker's JSON, decoded):

* ``dict`` is a Go map with string keys, ``list``/``tuple`` a slice, ``str``/``bool``/``int``/``float`` are
  string/bool/int/float64 (ints stay ints: Go would decode JSON numbers into float64, docker's structs do not),
  ``None`` is a nil interface.  ``.Field`` on a map looks up the key; a missing key is Go's invalid value
  (printed ``<no value>``; ``missing_key="zero"`` or ``"error"`` as Go's ``missingkey`` option); a field on
  ``None`` or on a non-map value is an error.  As in Go, a pipeline yielding a nil interface prints
  ``<no value>`` (``{{.Null}}``) while ``print``/``printf`` print ``<nil>``.
* ``None`` also stands for docker's nil slices and maps: ``range`` over it runs the ``else`` branch and ``len`` of it
  is 0 (Go would fail on an untyped nil).  A dict whose values are all strings (or that is empty) behaves as a
  ``map[string]string``: ``index`` of a missing key gives ``""`` (docker's ``index .Config.Labels "x"``).
* A callable value in a dict is a method: ``{{.Label "com.example"}}`` calls it with the arguments; such values
  are left out of ``json`` and of map printing.  Callers may use this for docker's ``.Label`` and for fields
  that are costly to compute.
* ``json`` writes dicts in their insertion order (docker's JSON keeps its struct order, and its maps come
  sorted); ``{{.}}``/``%v`` print maps with sorted keys, as Go's fmt does.

Errors are :class:`imgcore.errors.InvalidTemplate` naming the template, the position (``line:column`` as Go
counts: line from 1, column from 0) and the cause in Go's words (``can't evaluate field Foo in type string``).

Invariants: a parsed :class:`Template` is immutable and may be executed concurrently; the module imports only
the standard library and :mod:`imgcore.errors` and compiles nothing at import time.
"""

from __future__ import annotations

import contextlib
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, NoReturn

from imgcore.errors import InvalidTemplate

__all__ = ["NO_VALUE", "Template", "go_json", "go_sprint", "render", "render_rows", "tabwrite"]


class _NoValue:
    """Go's invalid ``reflect.Value``: what a missing map key evaluates to; prints as ``<no value>``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()
_SPACE = " \t\r\n"
_KEYWORDS = frozenset(("block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"))
_MAX_DEPTH = 100  # nested {{template}} calls (Go allows 100000; Python's stack does not)


# ------------------------------------------------------------------------------------------------ errors


def _where(text: str, pos: int) -> tuple[int, int]:
    """Go's ErrorContext: 1-based line, 0-based column of ``pos``."""
    before = text[:pos]
    nl = before.rfind("\n")
    return before.count("\n") + 1, pos if nl < 0 else pos - nl - 1


def _fail(text: str, pos: int, message: str) -> NoReturn:
    line, col = _where(text, pos)
    shown = text if len(text) <= 120 else text[:117] + "..."
    raise InvalidTemplate(
        f"template {_quote(shown)}: {line}:{col}: {message}", template=text, offset=pos, line=line, column=col
    )


class _CallError(Exception):
    """A builtin's error (Go's returned ``error``); becomes ``error calling NAME: ...``."""


# ------------------------------------------------------------------------------------------------ lexer
# Tokens are tuples (kind, value, pos, source text). Kinds follow Go's text/template/parse/lex.go items.


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


def _right_delim(text: str, p: int) -> int:
    """Length of a right delimiter at ``p``: 4 for `` -}}`` (trim marker), 2 for ``}}``, else 0."""
    if text.startswith("}}", p):
        return 2
    if text.startswith("-}}", p + 1) and text[p] in _SPACE:
        return 4
    return 0


def _at_terminator(text: str, p: int) -> bool:
    if p >= len(text):
        return True
    c = text[p]
    return c in _SPACE or c in ".,|:()" or text.startswith("}}", p)


def _lex(text: str) -> list[tuple[str, Any, int, str]]:
    toks: list[tuple[str, Any, int, str]] = []
    n = len(text)
    pos = 0
    while True:
        i = text.find("{{", pos)
        if i < 0:
            if pos < n:
                toks.append(("text", text[pos:], pos, ""))
            break
        trim = i + 3 < n and text[i + 2] == "-" and text[i + 3] in _SPACE
        seg = text[pos:i]
        if trim:
            seg = seg.rstrip(_SPACE)
        if seg:
            toks.append(("text", seg, pos, ""))
        p = i + (4 if trim else 2)
        if text.startswith("/*", p):
            end = text.find("*/", p + 2)
            if end < 0:
                _fail(text, i, "unclosed comment")
            d = _right_delim(text, end + 2)
            if not d:
                _fail(text, i, "comment ends before closing delimiter")
            pos = end + 2 + d
            if d == 4:
                while pos < n and text[pos] in _SPACE:
                    pos += 1
            continue
        toks.append(("left", "{{", i, "{{"))
        pos = _lex_action(text, p, toks)
    toks.append(("eof", None, n, ""))
    return toks


def _lex_action(text: str, p: int, toks: list[tuple[str, Any, int, str]]) -> int:
    n = len(text)
    depth = 0
    while True:
        d = _right_delim(text, p)
        if d:
            if depth:
                _fail(text, p, "unclosed left paren")
            toks.append(("right", "}}", p, "}}"))
            p += d
            if d == 4:
                while p < n and text[p] in _SPACE:
                    p += 1
            return p
        if p >= n:
            _fail(text, p, "unclosed action")
        c = text[p]
        start = p
        if c in _SPACE:
            while p < n and text[p] in _SPACE:
                p += 1
            if text[p - 1] in _SPACE and text.startswith("-}}", p):  # " -}}": its space is the marker's
                p -= 1
            if p > start:
                toks.append(("space", " ", start, text[start:p]))
            continue
        if c == "=":
            toks.append(("assign", "=", p, "="))
            p += 1
        elif c == ":":
            if not text.startswith(":=", p):
                _fail(text, p, "expected :=")
            toks.append(("declare", ":=", p, ":="))
            p += 2
        elif c == "|":
            toks.append(("pipe", "|", p, "|"))
            p += 1
        elif c == '"' or c == "'":
            p += 1
            while True:
                if p >= n or text[p] == "\n":
                    _fail(text, start, "unterminated quoted string" if c == '"' else "unterminated character constant")
                if text[p] == "\\":
                    p += 2
                    continue
                if text[p] == c:
                    break
                p += 1
            src = text[start : p + 1]
            p += 1
            if c == '"':
                toks.append(("string", _unquote(text, start, src[1:-1], '"'), start, src))
            else:
                body = _unquote(text, start, src[1:-1], "'")
                if len(body) != 1:
                    _fail(text, start, f"malformed character constant: {src}")
                toks.append(("number", (ord(body), ord(body)), start, src))
        elif c == "`":
            end = text.find("`", p + 1)
            if end < 0:
                _fail(text, p, "unterminated raw quoted string")
            toks.append(("string", text[p + 1 : end].replace("\r", ""), p, text[p : end + 1]))
            p = end + 1
        elif c == "$" or (c == "." and not (p + 1 < n and "0" <= text[p + 1] <= "9")):
            p += 1
            if _at_terminator(text, p):
                toks.append(("var", "$", start, "$") if c == "$" else ("dot", ".", start, "."))
                continue
            while p < n and _is_alnum(text[p]):
                p += 1
            if not _at_terminator(text, p):
                _fail(text, p, f"bad character {_rune_desc(text[p])}")
            word = text[start:p]
            toks.append(("var", word, start, word) if c == "$" else ("field", word[1:], start, word))
        elif c in "+-." or "0" <= c <= "9":
            p = _lex_number(text, p, toks)
        elif _is_alnum(c):
            while p < n and _is_alnum(text[p]):
                p += 1
            if not _at_terminator(text, p):
                _fail(text, p, f"bad character {_rune_desc(text[p])}")
            word = text[start:p]
            if word in _KEYWORDS:
                toks.append(("kw", word, start, word))
            elif word == "nil":
                toks.append(("nil", None, start, word))
            elif word in ("true", "false"):
                toks.append(("bool", word == "true", start, word))
            else:
                toks.append(("ident", word, start, word))
        elif c == "(":
            depth += 1
            toks.append(("lparen", "(", p, "("))
            p += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                _fail(text, p, "unexpected right paren")
            toks.append(("rparen", ")", p, ")"))
            p += 1
        elif c.isascii() and c.isprintable():
            toks.append(("char", c, p, c))
            p += 1
        else:
            _fail(text, p, f"unrecognized character in action: {_rune_desc(c)}")


def _rune_desc(c: str) -> str:
    """Go's ``%#U``: ``U+002D '-'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


def _lex_number(text: str, p: int, toks: list[tuple[str, Any, int, str]]) -> int:
    """Go's scanNumber; the token's value is (ideal value, int value or None)."""
    n = len(text)
    start = p
    if p < n and text[p] in "+-":
        p += 1
    digits = "0123456789_"
    if text.startswith("0", p):
        p += 1
        if p < n and text[p] in "xX":
            digits, p = "0123456789abcdefABCDEF_", p + 1
        elif p < n and text[p] in "oO":
            digits, p = "01234567_", p + 1
        elif p < n and text[p] in "bB":
            digits, p = "01_", p + 1
    while p < n and text[p] in digits:
        p += 1
    if p < n and text[p] == ".":
        p += 1
        while p < n and text[p] in digits:
            p += 1
    if len(digits) == 11 and p < n and text[p] in "eE":
        p += 1
        if p < n and text[p] in "+-":
            p += 1
        while p < n and text[p] in "0123456789_":
            p += 1
    if len(digits) == 23 and p < n and text[p] in "pP":
        p += 1
        if p < n and text[p] in "+-":
            p += 1
        while p < n and text[p] in "0123456789_":
            p += 1
    src = text[start:p]
    if p < n and _is_alnum(text[p]):
        _fail(text, start, f"bad number syntax: {_quote(text[start : p + 1])}")
    toks.append(("number", _parse_number(text, start, src), start, src))
    return p


def _parse_number(text: str, pos: int, src: str) -> tuple[int | float, int | None]:
    """Go's parse.newNumber plus idealConstant: (value an interface{} argument gets, value as an int)."""
    body = src.lstrip("+-")
    neg = src.startswith("-")
    as_int: int | None = None
    try:
        if len(body) > 1 and body[0] == "0" and body[1:].replace("_", "").isdigit():
            as_int = int(body[1:].replace("_", ""), 8)  # Go's legacy octal 0777
        else:
            as_int = int(body, 0)
        if neg:
            as_int = -as_int
    except ValueError:
        as_int = None
    hex_int = body[:2] in ("0x", "0X") and "p" not in body.lower()
    if as_int is not None and (hex_int or not any(c in body for c in ".eEpP")):
        if not -(2**63) <= as_int < 2**64:
            _fail(text, pos, f"integer overflow: {_quote(src)}")
        return as_int, as_int
    try:
        if not (hex_int or any(c in body for c in ".eEpP")):
            raise ValueError(src)
        f = float.fromhex(src.replace("_", "")) if body[:2] in ("0x", "0X") else float(src)
    except ValueError:
        _fail(text, pos, f"illegal number syntax: {_quote(src)}")
    return f, (int(f) if math.isfinite(f) and f == int(f) else None)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(text: str, pos: int, body: str, quote: str) -> str:
    """strconv.Unquote of a double-quoted string or a character constant (without its quotes)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < n else ""
        i += 2
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
        elif e == quote:
            out.append(e)
        elif e in "xuU" and e:
            width = {"x": 2, "u": 4, "U": 8}[e]
            h = body[i : i + width]
            if len(h) != width or any(ch not in "0123456789abcdefABCDEF" for ch in h):
                _fail(text, pos, "invalid syntax")
            v = int(h, 16)
            if e != "x" and (v > 0x10FFFF or 0xD800 <= v < 0xE000):
                _fail(text, pos, "invalid syntax")
            out.append(chr(v))
            i += width
        elif e in "01234567" and e:
            o = body[i - 1 : i + 2]
            if len(o) != 3 or any(ch not in "01234567" for ch in o) or int(o, 8) > 255:
                _fail(text, pos, "invalid syntax")
            out.append(chr(int(o, 8)))
            i += 2
        else:
            _fail(text, pos, "invalid syntax")
    return "".join(out)


# ------------------------------------------------------------------------------------------------ parse tree


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text


class _Pipe(_Node):
    __slots__ = ("cmds", "decl", "fast", "is_assign")

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decl: list[str] = []
        self.is_assign = False
        self.cmds: list[_Command] = []
        self.fast: tuple[str, ...] | None = None  # {{.A.B}}: the field path, for the common case

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe


class _Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: tuple[str, ...]) -> None:
        super().__init__(pos)
        self.idents = idents

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


class _Variable(_Node):
    __slots__ = ("idents", "name")

    def __init__(self, pos: int, name: str, idents: tuple[str, ...] = ()) -> None:
        super().__init__(pos)
        self.name = name
        self.idents = idents

    def __str__(self) -> str:
        return self.name + "".join("." + i for i in self.idents)


class _Chain(_Node):
    __slots__ = ("idents", "node")

    def __init__(self, pos: int, node: _Node, idents: tuple[str, ...]) -> None:
        super().__init__(pos)
        self.node = node
        self.idents = idents

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + i for i in self.idents)


class _Dot(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _Nil(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _Literal(_Node):
    """A bool, string or number constant: ``value`` is what an ``interface{}`` argument receives."""

    __slots__ = ("as_int", "kind", "src", "value")

    def __init__(self, pos: int, kind: str, value: Any, src: str, as_int: int | None = None) -> None:
        super().__init__(pos)
        self.kind = kind
        self.value = value
        self.src = src
        self.as_int = as_int

    def __str__(self) -> str:
        return self.src


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Control(_Node):
    __slots__ = ("body", "else_body", "kind", "pipe")

    def __init__(self, pos: int, kind: str, pipe: _Pipe, body: list[_Node], else_body: list[_Node] | None) -> None:
        super().__init__(pos)
        self.kind = kind
        self.pipe = pipe
        self.body = body
        self.else_body = else_body


class _TemplateCall(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, pos: int, name: str, pipe: _Pipe | None) -> None:
        super().__init__(pos)
        self.name = name
        self.pipe = pipe


class _Break(_Node):
    __slots__ = ()


class _Continue(_Node):
    __slots__ = ()


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


class _End(_Node):
    __slots__ = ()


class _Else(_Node):
    __slots__ = ()


# ------------------------------------------------------------------------------------------------ parser


def _tok_str(tok: tuple[str, Any, int, str]) -> str:
    """Go's item.String() for error messages."""
    kind, _, _, src = tok
    if kind == "eof":
        return "EOF"
    if kind == "kw":
        return f"<{src}>"
    if len(src) > 10:
        return _quote(src[:10]) + "..."
    return _quote(src)


class _Parser:
    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defs: dict[str, list[_Node]] = {}

    # token access (Go's peek/next/backup; spaces are tokens)
    def next(self) -> tuple[str, Any, int, str]:
        t = self.toks[self.i]
        self.i += 1
        return t

    def peek(self) -> tuple[str, Any, int, str]:
        return self.toks[self.i]

    def next_non_space(self) -> tuple[str, Any, int, str]:
        t = self.next()
        while t[0] == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> tuple[str, Any, int, str]:
        j = self.i
        while self.toks[j][0] == "space":
            j += 1
        return self.toks[j]

    def fail(self, pos: int, message: str) -> NoReturn:
        _fail(self.text, pos, message)

    def unexpected(self, tok: tuple[str, Any, int, str], context: str) -> NoReturn:
        self.fail(tok[2], f"unexpected {_tok_str(tok)} in {context}")

    def expect(self, kind: str, context: str) -> tuple[str, Any, int, str]:
        t = self.next_non_space()
        if t[0] != kind:
            self.unexpected(t, context)
        return t

    # structure
    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self.peek()[0] != "eof":
            if self.peek()[0] == "left":
                save = self.i
                self.next()
                t = self.next_non_space()
                if t[0] == "kw" and t[1] == "define":
                    self.parse_definition(t)
                    continue
                self.i = save
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                self.fail(node.pos, f"unexpected {{{{{'end' if isinstance(node, _End) else 'else'}}}}}")
            root.append(node)
        return root

    def parse_definition(self, tok: tuple[str, Any, int, str]) -> None:
        name_tok = self.next_non_space()
        if name_tok[0] != "string":
            self.unexpected(name_tok, "define clause")
        self.expect("right", "define clause")
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            self.fail(end.pos, "unexpected {{else}} in define clause")
        self.defs[name_tok[1]] = body

    def item_list(self) -> tuple[list[_Node], _Node]:
        nodes: list[_Node] = []
        while self.peek_non_space()[0] != "eof":
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return nodes, node
            nodes.append(node)
        self.fail(len(self.text), "unexpected EOF")

    def text_or_action(self) -> _Node:
        t = self.next_non_space()
        if t[0] == "text":
            return _Text(t[2], t[1])
        if t[0] == "left":
            return self.action(t)
        self.unexpected(t, "input")

    def action(self, left: tuple[str, Any, int, str]) -> _Node:
        t = self.next_non_space()
        if t[0] == "kw":
            kw = t[1]
            if kw == "end":
                self.expect("right", "end")
                return _End(t[2])
            if kw == "else":
                p = self.peek_non_space()
                if p[0] == "kw" and p[1] in ("if", "with"):
                    return _Else(t[2])  # {{else if}} / {{else with}}: the keyword stays pending
                self.expect("right", "else")
                return _Else(t[2])
            if kw in ("if", "with", "range"):
                return self.control(t)
            if kw in ("break", "continue"):
                nt = self.next_non_space()
                if nt[0] != "right":
                    self.unexpected(nt, f"{{{{{kw}}}}}")
                if not self.range_depth:
                    self.fail(t[2], f"{{{{{kw}}}}} outside {{{{range}}}}")
                return _Break(t[2]) if kw == "break" else _Continue(t[2])
            if kw in ("template", "block"):
                return self.template_control(t, kw == "block")
            self.unexpected(t, "command")
        self.i -= 1
        return _Action(left[2], self.pipeline("command", "right"))

    def control(self, tok: tuple[str, Any, int, str]) -> _Node:
        context = tok[1]
        mark = len(self.vars)
        pipe = self.pipeline(context, "right")
        if context == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if context == "range":
            self.range_depth -= 1
        else_body: list[_Node] | None = None
        if isinstance(nxt, _Else):
            p = self.peek_non_space()
            if context in ("if", "with") and p[0] == "kw" and p[1] == context:
                self.next_non_space()
                else_body = [self.control(p)]  # "else if" is "else" + a nested "if" ending at the same {{end}}
            else:
                else_body, nxt = self.item_list()
                if not isinstance(nxt, _End):
                    self.fail(nxt.pos, "expected end; found {{else}}")
        del self.vars[mark:]
        return _Control(tok[2], context, pipe, body, else_body)

    def template_control(self, tok: tuple[str, Any, int, str], block: bool) -> _Node:
        context = "block clause" if block else "template clause"
        name_tok = self.next_non_space()
        if name_tok[0] != "string":
            self.unexpected(name_tok, context)
        pipe: _Pipe | None = None
        if self.peek_non_space()[0] != "right":
            pipe = self.pipeline(context, "right")
        else:
            self.next_non_space()
        if block:
            saved_vars, self.vars = self.vars, ["$"]
            body, end = self.item_list()
            self.vars = saved_vars
            if not isinstance(end, _End):
                self.fail(end.pos, "unexpected {{else}} in block clause")
            self.defs[name_tok[1]] = body
        return _TemplateCall(tok[2], name_tok[1], pipe)

    def pipeline(self, context: str, end: str) -> _Pipe:
        pipe = _Pipe(self.peek_non_space()[2])
        while True:  # declarations: "$x :=", "$x =", "$i, $e :="
            v = self.peek_non_space()
            if v[0] != "var":
                break
            save = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt[0] in ("declare", "assign"):
                self.next_non_space()
                pipe.is_assign = nxt[0] == "assign"
                pipe.decl.append(v[1])
                self.vars.append(v[1])
                break
            if nxt[0] == "char" and nxt[1] == ",":
                self.next_non_space()
                pipe.decl.append(v[1])
                self.vars.append(v[1])
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space()[0] in ("var", "right", "rparen"):
                        continue
                    self.fail(nxt[2], "range can only initialize variables")
                self.fail(nxt[2], f"too many declarations in {context}")
            self.i = save
            break
        while True:
            t = self.next_non_space()
            if t[0] == end:
                if not pipe.cmds:
                    self.fail(t[2], f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], (_Literal, _Dot, _Nil)):
                        self.fail(c.pos, f"non executable command in pipeline stage {k + 2}")
                if not pipe.decl and len(pipe.cmds) == 1 and len(pipe.cmds[0].args) == 1:
                    first = pipe.cmds[0].args[0]
                    if isinstance(first, _Field):
                        pipe.fast = first.idents
                return pipe
            if t[0] in ("bool", "number", "string", "dot", "field", "ident", "nil", "var", "lparen"):
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                self.unexpected(t, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space()[2])
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            t = self.next()
            if t[0] == "space":
                continue
            if t[0] in ("right", "rparen"):
                self.i -= 1
            elif t[0] != "pipe":
                self.unexpected(t, "operand")
            break
        if not cmd.args:
            self.fail(cmd.pos, "empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek()[0] == "field":
            fields: list[str] = []
            while self.peek()[0] == "field":
                fields.append(self.next()[1])
            if isinstance(node, _Field):
                return _Field(node.pos, node.idents + tuple(fields))
            if isinstance(node, _Variable):
                return _Variable(node.pos, node.name, node.idents + tuple(fields))
            if isinstance(node, (_Literal, _Nil, _Dot)):
                self.fail(node.pos, f"unexpected . after term {_quote(str(node))}")
            return _Chain(node.pos, node, tuple(fields))
        return node

    def term(self) -> _Node | None:
        t = self.next_non_space()
        kind, val, pos, src = t
        if kind == "ident":
            if val not in self.funcs:
                self.fail(pos, f"function {_quote(val)} not defined")
            return _Ident(pos, val)
        if kind == "dot":
            return _Dot(pos)
        if kind == "nil":
            return _Nil(pos)
        if kind == "var":
            if val not in self.vars:
                self.fail(pos, f"undefined variable {_quote(val)}")
            return _Variable(pos, val)
        if kind == "field":
            return _Field(pos, (val,))
        if kind == "bool":
            return _Literal(pos, "bool", val, src)
        if kind == "number":
            return _Literal(pos, "number", val[0], src, val[1])
        if kind == "string":
            return _Literal(pos, "string", val, src)
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        self.i -= 1
        return None


# ------------------------------------------------------------------------------------------------ execution


def _go_type(v: Any) -> str:
    if v is None or v is NO_VALUE:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]string" if v and all(isinstance(e, str) for e in v) else "[]interface {}"
    if isinstance(v, Mapping):
        return "map[string]string" if _string_map(v) else "map[string]interface {}"
    if callable(v):
        return "func"
    return type(v).__name__


def _string_map(m: Mapping[str, Any]) -> bool:
    return all(isinstance(v, str) for v in m.values())


def _truth(v: Any) -> bool:
    """Go's isTrue: false, 0, nil, empty string/slice/map are false; everything else true."""
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0
    if isinstance(v, (str, list, tuple, Mapping)):
        return len(v) > 0
    return True


class _State:
    __slots__ = ("depth", "funcs", "missing", "out", "tmpl", "vars")

    def __init__(self, tmpl: Template, funcs: Mapping[str, _Func], out: list[str]) -> None:
        self.tmpl = tmpl
        self.funcs = funcs
        self.missing = tmpl.missing_key
        self.out = out
        self.vars: list[list[Any]] = []
        self.depth = 0

    def fail(self, node: _Node, message: str) -> NoReturn:
        ctx = str(node) if not isinstance(node, (_Control, _Text, _TemplateCall, _Action)) else ""
        _fail(self.tmpl.text, node.pos, f"executing at <{ctx}>: {message}" if ctx else f"executing: {message}")

    # walking
    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        out = self.out
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                fast = node.pipe.fast
                if fast is not None:  # plain dicts down to a string: what the general path would print
                    v = dot
                    for name in fast:
                        if type(v) is not dict:
                            break
                        v = v.get(name, _MISSING)
                    else:
                        if type(v) is str:
                            out.append(v)
                            continue
                value = self.eval_pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    out.append(self.printable(node, value))
            elif isinstance(node, _Control):
                mark = len(self.vars)
                try:
                    if node.kind == "range":
                        self.walk_range(dot, node)
                    else:
                        value = self.eval_pipeline(dot, node.pipe)
                        if _truth(value):
                            self.walk(value if node.kind == "with" else dot, node.body)
                        elif node.else_body is not None:
                            self.walk(dot, node.else_body)
                finally:
                    del self.vars[mark:]
            elif isinstance(node, _TemplateCall):
                self.walk_template(dot, node)
            elif isinstance(node, _Break):
                raise _BreakSignal
            elif isinstance(node, _Continue):
                raise _ContinueSignal

    def walk_range(self, dot: Any, node: _Control) -> None:
        value = self.eval_pipeline(dot, node.pipe)
        decl = node.pipe.decl
        if isinstance(value, Mapping):
            items: Iterable[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value, key=_sort_key)]
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(decl) > 1:
                self.fail(node, f"can't use {value} to iterate over more than one variable")
            items = ((i, i) for i in range(value))
        elif value is None or value is NO_VALUE:
            items = ()
        else:
            self.fail(node, f"range can't iterate over {go_sprint(value)}")
        mark = len(self.vars)
        ran = False
        try:
            for key, elem in items:
                ran = True
                if decl:
                    if node.pipe.is_assign:
                        self.set_var(node, decl[0], key if len(decl) > 1 else elem)
                        if len(decl) > 1:
                            self.set_var(node, decl[1], elem)
                    else:
                        self.vars[mark - 1][1] = elem
                        if len(decl) > 1:
                            self.vars[mark - 2][1] = key
                try:
                    self.walk(elem, node.body)
                except _ContinueSignal:
                    pass
                finally:
                    del self.vars[mark:]
        except _BreakSignal:
            return
        if not ran and node.else_body is not None:
            self.walk(dot, node.else_body)

    def walk_template(self, dot: Any, node: _TemplateCall) -> None:
        body = self.tmpl.defs.get(node.name)
        if body is None:
            self.fail(node, f"template {_quote(node.name)} not defined")
        value = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else NO_VALUE
        if self.depth >= _MAX_DEPTH:
            self.fail(node, f"exceeded maximum template depth ({_MAX_DEPTH})")
        saved = self.vars
        self.vars = [["$", value]]
        self.depth += 1
        try:
            self.walk(value, body)
        finally:
            self.depth -= 1
            self.vars = saved

    def printable(self, node: _Node, value: Any) -> str:
        if value is NO_VALUE:
            return "<no value>"
        if isinstance(value, str):
            return value
        if _is_method(value):
            self.fail(node, f"can't print {node.pipe if isinstance(node, _Action) else node} of type func")
        return go_sprint(value)

    # variables
    def var_value(self, node: _Node, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.fail(node, f"undefined variable: {name}")

    def set_var(self, node: _Node, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.fail(node, f"undefined variable: {name}")

    # evaluation
    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # Go digs a nil interface{} out to an invalid value
                value = NO_VALUE
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(pipe, name, value)
            else:
                self.vars.append([name, value])
        return value

    def eval_command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            if isinstance(first.node, _Nil):
                self.fail(first, f"indirection through explicit nil in {first}")
            receiver = self.eval_arg(dot, "value", first.node)
            return self.eval_field_chain(dot, receiver, first, first.idents, cmd.args, final)
        if isinstance(first, _Ident):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, _Variable):
            value = self.var_value(first, first.name)
            if not first.idents:
                self.not_a_function(cmd.args, final)
                return value
            return self.eval_field_chain(dot, value, first, first.idents, cmd.args, final)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Pipe):
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            self.fail(first, "nil is not a command")
        if isinstance(first, _Literal):
            return first.value
        self.fail(first, f"can't evaluate command {_quote(str(first))}")

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            self.fail(args[0], f"can't give argument to non-function {args[0]}")

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: _Node, idents: tuple[str, ...], args: list[_Node], final: Any
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [], _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: _Node, args: list[_Node], final: Any, receiver: Any) -> Any:
        if receiver is NO_VALUE or receiver is _MISSING:
            if self.missing == "error":
                self.fail(node, f"nil data; no entry for key {_quote(name)}")
            return NO_VALUE
        if receiver is None:
            self.fail(node, f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Mapping):
            try:
                value = receiver[name]
            except KeyError:
                value = NO_VALUE
            if _is_method(value):
                argv = [self.eval_arg(dot, "any", a) for a in args[1:]]
                if final is not _MISSING:
                    argv.append(None if final is NO_VALUE else final)
                try:
                    return value(*argv)
                except InvalidTemplate:
                    raise
                except Exception as e:
                    self.fail(node, f"error calling {name}: {e}")
            if len(args) > 1 or final is not _MISSING:
                self.fail(node, f"{name} is not a method but has arguments")
            if value is NO_VALUE:
                if self.missing == "error":
                    self.fail(node, f"map has no entry for key {_quote(name)}")
                if self.missing == "zero":
                    return _zero(receiver)
            return value
        self.fail(node, f"can't evaluate field {name} in type {_go_type(receiver)}")

    def eval_function(self, dot: Any, node: _Ident, args: list[_Node], final: Any) -> Any:
        fn = self.funcs.get(node.name)
        if fn is None:
            self.fail(node, f"{_quote(node.name)} is not a defined function")
        argn = args[1:]
        num_in = len(argn) + (final is not _MISSING)
        fixed = fn.params
        if fn.variadic is not None:
            if num_in < len(fixed):
                self.fail(node, f"wrong number of args for {node.name}: want at least {len(fixed)} got {len(argn)}")
        elif num_in != len(fixed):
            self.fail(node, f"wrong number of args for {node.name}: want {len(fixed)} got {num_in}")
        if node.name in ("and", "or") and fn.builtin:
            want = node.name == "or"
            v: Any = NO_VALUE
            for a in argn:
                v = self.eval_arg(dot, "value", a)
                if _truth(v) == want:
                    return v
            if final is not _MISSING:
                v = final
            return v
        argv: list[Any] = []
        for k, a in enumerate(argn):
            kind = fixed[k] if k < len(fixed) else fn.variadic
            argv.append(self.eval_arg(dot, kind or "any", a))
        if final is not _MISSING:
            k = num_in - 1
            kind = fixed[k] if k < len(fixed) else fn.variadic
            argv.append(self.check(node, final, kind or "any"))
        try:
            return fn.impl(*argv)
        except _CallError as e:
            self.fail(node, f"error calling {node.name}: {e}")
        except InvalidTemplate:
            raise
        except (_BreakSignal, _ContinueSignal):
            raise
        except Exception as e:  # Go's safeCall turns a panic into an error
            if fn.builtin:
                raise
            self.fail(node, f"error calling {node.name}: {e}")

    def eval_arg(self, dot: Any, kind: str, node: _Node) -> Any:
        if isinstance(node, _Dot):
            return self.check(node, dot, kind)
        if isinstance(node, _Nil):
            if kind == "any":
                return None
            if kind == "value":
                return NO_VALUE
            if kind == "strings":
                return []
            self.fail(node, f"cannot assign nil to {_KIND_NAMES[kind]}")
        if isinstance(node, _Field):
            return self.check(node, self.eval_field_chain(dot, dot, node, node.idents, [node], _MISSING), kind)
        if isinstance(node, _Variable):
            value = self.var_value(node, node.name)
            if node.idents:
                value = self.eval_field_chain(dot, value, node, node.idents, [node], _MISSING)
            return self.check(node, value, kind)
        if isinstance(node, _Pipe):
            return self.check(node, self.eval_pipeline(dot, node), kind)
        if isinstance(node, _Ident):
            return self.check(node, self.eval_function(dot, node, [node], _MISSING), kind)
        if isinstance(node, _Chain):
            if isinstance(node.node, _Nil):
                self.fail(node, f"indirection through explicit nil in {node}")
            receiver = self.eval_arg(dot, "value", node.node)
            return self.check(node, self.eval_field_chain(dot, receiver, node, node.idents, [node], _MISSING), kind)
        assert isinstance(node, _Literal)
        if kind in ("any", "value"):
            return node.value
        if kind == "string":
            if node.kind == "string":
                return node.value
            self.fail(node, f"expected string; found {node}")
        if kind == "int":
            if node.kind == "number" and node.as_int is not None:
                return node.as_int
            self.fail(node, f"expected integer; found {node}")
        self.fail(node, f"can't handle {node} for arg of type {_KIND_NAMES[kind]}")

    def check(self, node: _Node, value: Any, kind: str) -> Any:
        """Go's validateType: the value as a parameter of this kind receives it."""
        if kind == "value":
            return value
        if value is NO_VALUE or value is _MISSING:
            if kind == "any":
                return None
            if kind == "strings":
                return []
            self.fail(node, f"invalid value; expected {_KIND_NAMES[kind]}")
        if kind == "any":
            return value
        if kind == "string":
            if isinstance(value, str):
                return value
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind == "strings":
            if value is None:
                return []
            if isinstance(value, (list, tuple)) and all(isinstance(e, str) for e in value):
                return value
            if isinstance(value, (list, tuple)):
                self.fail(node, "wrong type for value; expected []string; got []interface {}")
        got = "interface {}" if value is None else _go_type(value)
        self.fail(node, f"wrong type for value; expected {_KIND_NAMES[kind]}; got {got}")


_KIND_NAMES = {"string": "string", "int": "int", "strings": "[]string", "any": "interface {}", "value": "value"}


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()  # Go's missingVal: "no final value from a previous pipeline stage"


def _zero(m: Mapping[str, Any]) -> Any:
    """The zero value of the map's element type: "" for string maps, else a nil interface."""
    return "" if _string_map(m) else None


def _sort_key(k: Any) -> tuple[int, Any]:
    """Go's fmtsort order for map keys: numbers numerically, strings bytewise (== code point order)."""
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        return (0, k)
    if isinstance(k, str):
        return (1, k)
    return (2, str(k))


# ------------------------------------------------------------------------------------------------ functions


class _Func:
    __slots__ = ("builtin", "impl", "params", "variadic")

    def __init__(self, impl: Callable[..., Any], params: tuple[str, ...], variadic: str | None = None) -> None:
        self.impl = impl
        self.params = params
        self.variadic = variadic
        self.builtin = True


def _basic_kind(v: Any) -> str:
    if v is None or v is NO_VALUE:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    ka = _basic_kind(a)
    for b in others:
        kb = _basic_kind(b)
        if ka in ("nil", "other") and kb in ("nil", "other"):
            if ka == "nil" or kb == "nil":
                truth = ka == kb
            elif type(a) is not type(b) and not (isinstance(a, Mapping) and isinstance(b, Mapping)):
                raise _CallError(f"non-comparable types {go_sprint(a)}: {_go_type(a)}, {_go_type(b)}: {go_sprint(b)}")
            else:
                raise _CallError(f"non-comparable type {go_sprint(a)}: {_go_type(a)}")
        elif ka != kb:
            if ka == "nil" or kb == "nil":
                truth = False
            else:
                raise _CallError("incompatible types for comparison")
        else:
            truth = a == b
        if truth:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("nil", "other") or kb in ("nil", "other"):
        raise _CallError("invalid type for comparison")
    if ka != kb:
        raise _CallError("incompatible types for comparison")
    if ka == "bool":
        raise _CallError("invalid type for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _len(v: Any) -> int:
    if v is None or v is NO_VALUE:
        return 0
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (list, tuple, Mapping)):
        return len(v)
    raise _CallError(f"len of type {_go_type(v)}")


def _index_arg(i: Any, cap: int) -> int:
    if i is None or i is NO_VALUE:
        raise _CallError("cannot index slice/array with nil")
    if not isinstance(i, int) or isinstance(i, bool):
        raise _CallError(f"cannot index slice/array with type {_go_type(i)}")
    if i < 0 or i > cap:
        raise _CallError(f"index out of range: {i}")
    return i


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise _CallError("index of untyped nil")
    for i in indexes:
        if item is None:
            raise _CallError("index of nil pointer")
        if isinstance(item, (list, tuple, str)):
            seq: Any = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
            x = _index_arg(i, len(seq))
            if x == len(seq):
                raise _CallError(f"index out of range: {x}")
            item = seq[x]
        elif isinstance(item, Mapping):
            if i is None or i is NO_VALUE:
                raise _CallError("value is nil; should be of type string")
            if not isinstance(i, str):
                raise _CallError(f"value has type {_go_type(i)}; should be string")
            item = item[i] if i in item else _zero(item)
        else:
            raise _CallError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise _CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise _CallError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _CallError("cannot 3-index slice a string")
        seq: Any = item.encode("utf-8", "surrogatepass")
    elif isinstance(item, (list, tuple)):
        seq = item
    else:
        raise _CallError(f"can't slice item of type {_go_type(item)}")
    idx = [0, len(seq), len(seq)]
    for k, i in enumerate(indexes):
        idx[k] = _index_arg(i, len(seq))
    if idx[0] > idx[1]:
        raise _CallError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise _CallError(f"invalid slice index: {idx[1]} > {idx[2]}")
    out = seq[idx[0] : idx[1]]
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else list(out)


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(args)


def _html(*args: Any) -> str:
    s = _eval_args(args)
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\0", "\ufffd")
    )


_JS_ESC = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _js(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in _JS_ESC:
            out.append(_JS_ESC[c])
        elif c < " ":
            out.append(f"\\u{ord(c):04X}")
        elif c.isascii() or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04X}")
    return "".join(out)


def _urlquery(*args: Any) -> str:
    out = []
    for b in _eval_args(args).encode("utf-8", "surrogatepass"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_.~"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def _docker_json(v: Any) -> str:
    try:
        return go_json(v)
    except (TypeError, ValueError):
        return ""  # docker ignores the encoder's error: an unsupported value prints nothing


def _title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word (ASCII alphanumerics and _ join words)."""
    out = []
    prev = " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _is_separator(c: str) -> bool:
    if c.isascii():
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def _case(s: str, upper: bool) -> str:
    """strings.ToUpper/ToLower map rune by rune (no 'ß' -> 'SS')."""
    if s.isascii():
        return s.upper() if upper else s.lower()
    out = []
    for c in s:
        m = c.upper() if upper else c.lower()
        out.append(m if len(m) == 1 else c)
    return "".join(out)


def _split(s: str, sep: str) -> list[str]:
    return list(s) if sep == "" else s.split(sep)


def _pad(s: str, prefix: int, suffix: int) -> str:
    if s == "":
        return s
    if prefix < 0 or suffix < 0:
        raise _CallError("strings: negative Repeat count")  # strings.Repeat panics; safeCall reports it
    return " " * prefix + s + " " * suffix


def _truncate(s: str, length: int) -> str:
    b = s.encode("utf-8", "surrogatepass")
    if len(b) < length:
        return s
    if length < 0:
        raise _CallError(f"slice bounds out of range [:{length}]")
    return b[:length].decode("utf-8", "ignore")


def _identity(v: str, *_: Any) -> str:
    return v


_S, _I, _L, _A, _V = "string", "int", "strings", "any", "value"
_BUILTINS: dict[str, _Func] = {
    "and": _Func(lambda *a: a[-1], (_V,), _V),
    "or": _Func(lambda *a: a[-1], (_V,), _V),
    "not": _Func(lambda v: not _truth(v), (_V,)),
    "len": _Func(_len, (_V,)),
    "index": _Func(_index, (_V,), _V),
    "slice": _Func(_slice, (_V,), _V),
    "eq": _Func(_eq, (_V,), _V),
    "ne": _Func(lambda a, b: not _eq(a, b), (_V, _V)),
    "lt": _Func(_lt, (_V, _V)),
    "le": _Func(_le, (_V, _V)),
    "gt": _Func(lambda a, b: not _le(a, b), (_V, _V)),
    "ge": _Func(lambda a, b: not _lt(a, b), (_V, _V)),
    "print": _Func(lambda *a: _sprint(a), (), _A),
    "printf": _Func(lambda f, *a: _sprintf(f, a), (_S,), _A),
    "println": _Func(lambda *a: _sprintln(a), (), _A),
    "html": _Func(_html, (), _A),
    "js": _Func(_js, (), _A),
    "urlquery": _Func(_urlquery, (), _A),
    # docker/cli templates.basicFunctions
    "json": _Func(_docker_json, (_A,)),
    "split": _Func(_split, (_S, _S)),
    "join": _Func(lambda elems, sep: sep.join(elems), (_L, _S)),
    "title": _Func(_title, (_S,)),
    "lower": _Func(lambda s: _case(s, False), (_S,)),
    "upper": _Func(lambda s: _case(s, True), (_S,)),
    "pad": _Func(_pad, (_S, _I, _I)),
    "truncate": _Func(_truncate, (_S, _I)),
}
# docker/cli templates.HeaderFunctions: a table's header keeps the column name (pad is not overridden)
_HEADER_FUNCS: dict[str, _Func] = dict(_BUILTINS)
_HEADER_FUNCS.update(
    {
        "json": _Func(_identity, (_S,)),
        "split": _Func(_identity, (_S, _S)),
        "join": _Func(_identity, (_S, _S)),
        "title": _Func(_identity, (_S,)),
        "lower": _Func(_identity, (_S,)),
        "upper": _Func(_identity, (_S,)),
        "truncate": _Func(_identity, (_S, _I)),
    }
)


# ------------------------------------------------------------------------------------------------ fmt


def _digits(a: float) -> tuple[str, int]:
    """Shortest decimal digits of a positive finite float and the decimal point: a == 0.DIGITS * 10**dp."""
    r = repr(a)
    mant, _, e = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    stripped = digits.lstrip("0")
    dp = len(ip) + (int(e) if e else 0) - (len(digits) - len(stripped))
    return stripped.rstrip("0") or "0", dp


def _shortest(v: float, fmt: str) -> str:
    """strconv.FormatFloat(v, fmt, -1, 64) for fmt in e, E, f, g, G."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0:
        digits, dp = "0", 1
        if fmt in "eE":
            return f"{sign}0{fmt}+00"
        return sign + "0"
    digits, dp = _digits(abs(v))
    if fmt in "gG":
        exp = dp - 1
        fmt = ("e" if fmt == "g" else "E") if exp < -4 or exp >= 6 else "f"
    if fmt in "eE":
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}{fmt}{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _format_float(v: float, fmt: str, prec: int, sharp: bool = False) -> str:
    """strconv.AppendFloat as fmt uses it (prec -1: shortest)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if fmt == "F":
        fmt = "f"
    if fmt == "b":
        m, e = math.frexp(abs(v))
        bmant, bexp = (int(m * (1 << 53)), e - 53) if v else (0, -1074)
        return f"{'-' if math.copysign(1.0, v) < 0 else ''}{bmant}p{'+' if bexp >= 0 else ''}{bexp}"
    if fmt in "xX":
        h = float(v).hex()  # '-0x1.8000000000000p+1'
        neg = h.startswith("-")
        h = h.lstrip("-")
        hmant, _, hexp = h[2:].partition("p")
        lead, _, frac = hmant.partition(".")
        frac = frac.rstrip("0")
        if prec >= 0:
            frac = (frac + "0" * prec)[:prec]  # NOTE: truncates where Go rounds; %.Nx of floats is rare
        ex = int(hexp)
        s = f"0x{lead}{'.' + frac if frac else ''}p{'-' if ex < 0 else '+'}{abs(ex):02d}"
        s = ("-" if neg else "") + s
        return s.upper().replace("0X", "0X") if fmt == "X" else s
    if prec < 0 and not sharp:
        return _shortest(v, fmt)
    if prec < 0:
        prec = 6
    return ("%" + ("#" if sharp else "") + "." + str(prec) + fmt) % v


_QUOTE_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _quote(s: str, quote: str = '"', ascii_only: bool = False) -> str:
    """strconv.Quote (QuoteToASCII with ascii_only; QuoteRune with quote="'")."""
    if s.isascii() and s.isprintable() and quote not in s and "\\" not in s:
        return quote + s + quote
    out = [quote]
    for c in s:
        o = ord(c)
        if c == quote or c == "\\":
            out.append("\\" + c)
        elif (c.isprintable() and not ascii_only) or (c.isascii() and c.isprintable()):
            out.append(c)
        elif c in _QUOTE_ESC:
            out.append(_QUOTE_ESC[c])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o < 0xE000:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


def _can_backquote(s: str) -> bool:
    return all(c == "\t" or (c >= " " and c not in "`\x7f\ufeff") for c in s)


class _Printer:
    """Go's fmt.pp for the value kinds of this module (bool, int, float64, string, slices, maps, nil)."""

    __slots__ = ("buf", "minus", "plus", "plus_v", "prec", "sharp", "sharp_v", "space", "wid", "zero")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.clear()

    def clear(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = self.plus_v = self.sharp_v = False
        self.wid: int | None = None
        self.prec: int | None = None

    def padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.zero and not self.minus else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid:
            self.buf.append(s)
            return
        n = self.wid - len(s)
        if self.minus:
            self.buf.append(s)
            self.padding(n)
        else:
            self.padding(n)
            self.buf.append(s)

    def bad_verb(self, verb: str, arg: Any) -> None:
        self.buf.append("%!" + verb + "(")
        if arg is None or arg is NO_VALUE:
            self.buf.append("<nil>")
        else:
            self.buf.append(_go_type(arg) + "=")
            self.print_arg(arg, "v")
        self.buf.append(")")

    def print_arg(self, arg: Any, verb: str, depth: int = 0) -> None:
        if arg is None or arg is NO_VALUE:
            if depth:
                self.buf.append("<nil>")  # a nil interface inside a slice or map: unpadded
            elif verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.fmt_s(_go_type(arg))
            return
        if isinstance(arg, bool):
            if verb in "tv":
                self.pad("true" if arg else "false")
            else:
                self.bad_verb(verb, arg)
        elif isinstance(arg, int):
            self.fmt_integer(arg, verb)
        elif isinstance(arg, float):
            self.fmt_float(arg, verb)
        elif isinstance(arg, str):
            self.fmt_string(arg, verb)
        elif isinstance(arg, (list, tuple)):
            if self.sharp_v:
                self.buf.append(_go_type(arg) + "{")
                for i, e in enumerate(arg):
                    if i:
                        self.buf.append(", ")
                    self.print_arg(e, verb, depth + 1)
                self.buf.append("}")
                return
            self.buf.append("[")
            for i, e in enumerate(arg):
                if i:
                    self.buf.append(" ")
                self.print_arg(e, verb, depth + 1)
            self.buf.append("]")
        elif isinstance(arg, Mapping):
            keys = sorted((k for k, v in arg.items() if not _is_method(v)), key=_sort_key)
            self.buf.append(_go_type(arg) + "{" if self.sharp_v else "map[")
            for i, k in enumerate(keys):
                if i:
                    self.buf.append(", " if self.sharp_v else " ")
                self.print_arg(k, verb, depth + 1)
                self.buf.append(":")
                self.print_arg(arg[k], verb, depth + 1)
            self.buf.append("}" if self.sharp_v else "]")
        else:
            self.pad(f"<{type(arg).__name__}>")

    def fmt_integer(self, v: int, verb: str) -> None:
        if verb in "vd":
            self.fmt_int_base(v, 10, verb, False)
        elif verb == "b":
            self.fmt_int_base(v, 2, verb, False)
        elif verb in "oO":
            self.fmt_int_base(v, 8, verb, False)
        elif verb in "xX":
            self.fmt_int_base(v, 16, verb, verb == "X")
        elif verb == "c":
            self.pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v < 0xE000 else "\ufffd")
        elif verb == "q":
            c = chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v < 0xE000 else "\ufffd"
            self.pad(_quote(c, "'", self.plus))
        elif verb == "U":
            prec = self.prec if self.prec is not None and self.prec > 4 else 4
            s = f"U+{v:0{prec}X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:0{prec}X}"
            if self.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += f" '{chr(v)}'"
            old, self.zero = self.zero, False
            self.pad(s)
            self.zero = old
        else:
            self.bad_verb(verb, v)

    def fmt_int_base(self, v: int, base: int, verb: str, upper: bool) -> None:
        neg = v < 0
        u = -v if neg else v
        prec = 0
        if self.prec is not None:
            prec = self.prec
            if prec == 0 and u == 0:
                old, self.zero = self.zero, False
                self.padding(self.wid or 0)
                self.zero = old
                return
        elif self.zero and not self.minus and self.wid is not None:
            prec = self.wid
            if neg or self.plus or self.space:
                prec -= 1
        digits = format(u, {2: "b", 8: "o", 10: "d", 16: "X" if upper else "x"}[base])
        if len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        if self.sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8 and digits[0] != "0":
                digits = "0" + digits
            elif base == 16:
                digits = ("0X" if upper else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        sign = "-" if neg else "+" if self.plus else " " if self.space else ""
        old, self.zero = self.zero, False
        self.pad(sign + digits)
        self.zero = old

    def fmt_float(self, v: float, verb: str) -> None:
        if verb == "v":
            fmt, prec = "g", -1
        elif verb in "bgGxX":
            fmt, prec = verb, -1
        elif verb in "feEF":
            fmt, prec = verb, 6
        else:
            self.bad_verb(verb, v)
            return
        if self.prec is not None:
            prec = self.prec
        num = _format_float(v, fmt, prec, self.sharp and verb != "b")
        if num[0] in "+-":
            sign, body = num[0], num[1:]
        else:
            sign, body = "+", num
        if self.space and sign == "+" and not self.plus:
            sign = " "
        if body[0] in "IN":
            if body[0] == "N" and not self.space and not self.plus:
                sign = ""
            old, self.zero = self.zero, False
            self.pad(sign + body)
            self.zero = old
            return
        if self.plus or sign != "+":
            if self.zero and not self.minus and self.wid is not None and self.wid > len(sign + body):
                self.buf.append(sign)
                self.padding(self.wid - len(sign + body))
                self.buf.append(body)
                return
            self.pad(sign + body)
            return
        self.pad(body)

    def fmt_s(self, s: str) -> None:
        if self.prec is not None:
            s = s[: self.prec]
        self.pad(s)

    def fmt_string(self, s: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(s)
            else:
                self.fmt_s(s)
        elif verb == "s":
            self.fmt_s(s)
        elif verb in "xX":
            self.fmt_sx(s, verb == "X")
        elif verb == "q":
            self.fmt_q(s)
        else:
            self.bad_verb(verb, s)

    def fmt_q(self, s: str) -> None:
        if self.prec is not None:
            s = s[: self.prec]
        if self.sharp and _can_backquote(s):
            self.pad("`" + s + "`")
        else:
            self.pad(_quote(s, '"', self.plus))

    def fmt_sx(self, s: str, upper: bool) -> None:
        b = s.encode("utf-8", "surrogatepass")
        if self.prec is not None:
            b = b[: self.prec]
        if not b:
            self.padding(self.wid or 0)
            return
        x = "0X" if upper else "0x"
        parts = [f"{c:02X}" if upper else f"{c:02x}" for c in b]
        if self.space:
            text = " ".join((x + p) if self.sharp else p for p in parts)
        else:
            text = (x if self.sharp else "") + "".join(parts)
        old, self.zero = self.zero, False
        self.pad(text)
        self.zero = old


def _is_method(v: Any) -> bool:
    return callable(v) and not isinstance(v, (Mapping, list, tuple, str))


def _parse_num(fmt: str, i: int) -> tuple[int | None, int]:
    j = i
    while j < len(fmt) and fmt[j].isdigit() and fmt[j].isascii():
        j += 1
    if j == i:
        return None, i
    n = int(fmt[i:j])
    return (n if n <= 1_000_000 else None), j


def _sprintf(fmt: str, args: tuple[Any, ...]) -> str:
    """Go's fmt.Sprintf (doPrintf), including its %!verb(type=value) error forms."""
    p = _Printer()
    buf = p.buf
    n = len(fmt)
    argn = 0
    reordered = False
    i = 0
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            buf.append(fmt[i:])
            break
        if j > i:
            buf.append(fmt[i:j])
        i = j + 1
        p.clear()
        good = True
        while i < n and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                p.sharp = True
            elif c == "0":
                p.zero = True
            elif c == "+":
                p.plus = True
            elif c == "-":
                p.minus = True
            else:
                p.space = True
            i += 1
        after_index = False

        def arg_number(i: int) -> int:
            nonlocal argn, reordered, good, after_index
            if i >= n or fmt[i] != "[":
                after_index = False
                return i
            reordered = True
            close = fmt.find("]", i)
            if close < 0:
                good = False
                after_index = False
                return i + 1
            num, k = _parse_num(fmt, i + 1)
            if num is None or k != close or not 1 <= num <= len(args):
                good = False
                after_index = num is not None and k == close
                return close + 1
            argn = num - 1
            after_index = True
            return close + 1

        def int_from_arg() -> int | None:
            nonlocal argn
            if argn >= len(args):
                return None
            v = args[argn]
            argn += 1
            if isinstance(v, int) and not isinstance(v, bool) and -1_000_000 <= v <= 1_000_000:
                return v
            return None

        i = arg_number(i)
        if i < n and fmt[i] == "*":
            i += 1
            w = int_from_arg()
            if w is None:
                buf.append("%!(BADWIDTH)")
            else:
                p.wid = w
                if w < 0:
                    p.wid = -w
                    p.minus = True
                    p.zero = False
            after_index = False
        else:
            p.wid, i = _parse_num(fmt, i)
            if after_index and p.wid is not None:
                good = False
        if i + 1 < n and fmt[i] == ".":
            i += 1
            if after_index:
                good = False
            i = arg_number(i)
            if i < n and fmt[i] == "*":
                i += 1
                pr = int_from_arg()
                if pr is None or pr < 0:
                    p.prec = None
                    if pr is None:
                        buf.append("%!(BADPREC)")
                else:
                    p.prec = pr
                after_index = False
            else:
                p.prec, i = _parse_num(fmt, i)
                if p.prec is None:
                    p.prec = 0
        if not after_index:
            i = arg_number(i)
        if i >= n:
            buf.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            buf.append("%")
        elif not good:
            buf.append(f"%!{verb}(BADINDEX)")
        elif argn >= len(args):
            buf.append(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                p.sharp_v, p.sharp = p.sharp, False
                p.plus_v, p.plus = p.plus, False
            if p.sharp_v and verb == "v":
                _print_go_syntax(p, args[argn])
            else:
                p.print_arg(args[argn], verb)
            argn += 1
    if not reordered and argn < len(args):
        p.clear()
        buf.append("%!(EXTRA ")
        for k, a in enumerate(args[argn:]):
            if k:
                buf.append(", ")
            if a is None or a is NO_VALUE:
                buf.append("<nil>")
            else:
                buf.append(_go_type(a) + "=")
                p.print_arg(a, "v")
        buf.append(")")
    return "".join(buf)


def _print_go_syntax(p: _Printer, v: Any, depth: int = 0) -> None:
    """%#v for this module's value kinds."""
    if v is None or v is NO_VALUE:
        p.buf.append("interface {}(nil)" if depth else "<nil>")
    elif isinstance(v, str):
        p.buf.append(_quote(v))
    elif isinstance(v, bool):
        p.buf.append("true" if v else "false")
    elif isinstance(v, int):
        p.buf.append(str(v))
    elif isinstance(v, float):
        s = _shortest(v, "g")
        p.buf.append(s + (".0" if s.lstrip("-").isdigit() and not depth else ""))
    elif isinstance(v, (list, tuple)):
        p.buf.append(_go_type(v) + "{")
        for k, e in enumerate(v):
            if k:
                p.buf.append(", ")
            _print_go_syntax(p, e, depth + 1)
        p.buf.append("}")
    elif isinstance(v, Mapping):
        p.buf.append(_go_type(v) + "{")
        for k, key in enumerate(sorted((k for k, e in v.items() if not _is_method(e)), key=_sort_key)):
            if k:
                p.buf.append(", ")
            _print_go_syntax(p, key, depth + 1)
            p.buf.append(":")
            _print_go_syntax(p, v[key], depth + 1)
        p.buf.append("}")
    else:
        p.print_arg(v, "v")


def go_sprint(value: Any) -> str:
    """``fmt.Sprint(value)``, which is what ``{{.}}`` prints: ``map[a:1 b:[x y]]``, ``<nil>``, ``1e+06``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _shortest(value, "g")
    p = _Printer()
    p.print_arg(value, "v")
    return "".join(p.buf)


def _sprint(args: tuple[Any, ...] | list[Any]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    prev_string = False
    for k, a in enumerate(args):
        is_string = isinstance(a, str)
        if k and not is_string and not prev_string:
            out.append(" ")
        out.append(go_sprint(None if a is NO_VALUE else a))
        prev_string = is_string
    return "".join(out)


def _sprintln(args: tuple[Any, ...]) -> str:
    return " ".join(go_sprint(None if a is NO_VALUE else a) for a in args) + "\n"


# ------------------------------------------------------------------------------------------------ json

_JSON_ESC = {i: f"\\u{i:04x}" for i in range(0x20)}
_JSON_ESC.update({0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_JSON_ESC.update({ord('"'): '\\"', ord("\\"): "\\\\", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def _json_str(s: str) -> str:
    s = s.translate(_JSON_ESC)
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in s)
    return '"' + s + '"'


def _json_float(v: float) -> str:
    if not math.isfinite(v):
        raise ValueError(f"json: unsupported value: {_shortest(v, 'g')}")
    a = abs(v)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = _shortest(v, "e")
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return _shortest(v, "f")


def _json_into(v: Any, out: list[str], depth: int) -> None:
    if depth > 1000:
        raise ValueError("json: nesting too deep")
    if v is None or v is NO_VALUE:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(_json_float(v))
    elif isinstance(v, str):
        out.append(_json_str(v))
    elif isinstance(v, Mapping):
        out.append("{")
        first = True
        for k, e in v.items():
            if _is_method(e):
                continue
            if not first:
                out.append(",")
            first = False
            out.append(_json_str(k if isinstance(k, str) else go_sprint(k)))
            out.append(":")
            _json_into(e, out, depth + 1)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for k, e in enumerate(v):
            if k:
                out.append(",")
            _json_into(e, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(v).__name__}")


def go_json(value: Any) -> str:
    """Compact JSON as docker's ``{{json .}}`` writes it: Go's encoder with ``SetEscapeHTML(false)`` (``<>&`` kept,
    U+2028/U+2029 escaped, floats as Go formats them: ``1``, ``1.5``, ``1e+21``, ``1e-7``). Dicts keep their
    order. Raises ValueError for NaN/Inf and TypeError for other values, as Go's encoder fails."""
    out: list[str] = []
    _json_into(value, out, 0)
    return "".join(out)


# ------------------------------------------------------------------------------------------------ templates


class Template:
    """A parsed Go template. ``missing_key`` is Go's ``missingkey`` option: ``"default"`` (a missing map key is
    ``<no value>``), ``"zero"`` (the map's zero value) or ``"error"``."""

    __slots__ = ("defs", "missing_key", "root", "text")

    def __init__(self, text: str, *, missing_key: str = "default") -> None:
        if missing_key not in ("default", "invalid", "zero", "error"):
            raise ValueError(f"missing_key must be default, zero or error, not {missing_key!r}")
        self.text = text
        self.missing_key = "default" if missing_key == "invalid" else missing_key
        parser = _Parser(text, _BUILTINS)
        try:
            self.root = parser.parse()
        except RecursionError:
            _fail(text, 0, "template nested too deeply")
        self.defs = parser.defs

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def execute(self, data: Any) -> str:
        """The template applied to ``data`` (``$`` and the initial ``.``)."""
        out: list[str] = []
        self._run(data, _BUILTINS, out)
        return "".join(out)

    def _run(self, data: Any, funcs: Mapping[str, _Func], out: list[str]) -> None:
        state = _State(self, funcs, out)
        state.vars.append(["$", NO_VALUE if data is None else data])
        try:
            state.walk(NO_VALUE if data is None else data, self.root)
        except RecursionError:
            _fail(self.text, 0, "executing: data or template nested too deeply")


@lru_cache(maxsize=64)
def _cached(text: str, missing_key: str) -> Template:
    return Template(text, missing_key=missing_key)


def render(text: str, data: Any, *, missing_key: str = "default") -> str:
    """``text`` applied to ``data`` (the parse is cached), as ``docker inspect -f`` prints one object (without the
    newline docker adds after each object)."""
    return _cached(text, missing_key).execute(data)


class _Headers(dict[str, Any]):
    """The header row's data: the caller's field -> header mapping, else the field name upper-cased."""

    def __missing__(self, key: str) -> str:
        return key.upper()


def _pre_format(fmt: str) -> tuple[str, bool]:
    """docker/cli formatter.Context.preFormat: the template body and whether it is a table."""
    table = fmt.startswith("table")
    if table:
        body = fmt[5:]
    elif fmt == "json":
        body = "{{json .}}"
    else:
        body = fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return body, table


def render_rows(
    fmt: str,
    rows: Iterable[Any],
    headers: Mapping[str, str] | None = None,
    *,
    missing_key: str = "default",
) -> str:
    """One ``--format`` applied to every row, as docker's list commands print them; each row ends with a newline.

    ``table ...`` adds a header row (the template over ``headers``: field -> column title, default the field name
    upper-cased, with docker's header functions) and aligns the tab-separated columns (:func:`tabwrite`); ``json``
    is ``{{json .}}`` per row; anything else is a plain template. A caller that has a default table format
    substitutes it for a bare ``table`` before calling, as docker does."""
    body, table = _pre_format(fmt)
    tmpl = _cached(body, missing_key)
    out: list[str] = []
    for row in rows:
        tmpl._run(row, _BUILTINS, out)
        out.append("\n")
    if not table:
        return "".join(out)
    head: list[str] = []
    with contextlib.suppress(InvalidTemplate):  # docker ignores the header's errors and keeps what was written
        tmpl._run(_Headers(headers or {}), _HEADER_FUNCS, head)
    return tabwrite("".join(head) + "\n" + "".join(out))


# ------------------------------------------------------------------------------------------------ tabwriter


def _cell_width(s: str) -> int:
    """go-runewidth's StringWidth: East Asian wide/fullwidth count 2, combining marks and format characters 0."""
    if s.isascii():
        return len(s)
    w = 0
    for c in s:
        if c.isascii():
            w += 1
        elif unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        elif unicodedata.east_asian_width(c) in ("W", "F"):
            w += 2
        else:
            w += 1
    return w


def tabwrite(text: str, *, minwidth: int = 10, tabwidth: int = 1, padding: int = 3, padchar: str = " ") -> str:
    """Go's ``text/tabwriter`` (docker/cli's copy, cell widths by go-runewidth) with flags 0: tab-terminated cells
    in consecutive lines form a column padded to ``max(minwidth, widest + padding)``; the text after a line's last
    tab is not part of a column. ``\\v`` ends a cell like a tab; ``\\f`` ends a line and every column. Docker's
    tables use the defaults."""
    text = text.replace("\v", "\t")
    sections = text.split("\f")
    return "".join(
        _tabwrite_section(sec + ("\n" if k + 1 < len(sections) else ""), minwidth, tabwidth, padding, padchar)
        for k, sec in enumerate(sections)
    )


def _tabwrite_section(text: str, minwidth: int, tabwidth: int, padding: int, padchar: str) -> str:
    out: list[str] = []
    lines: list[list[tuple[str, int]]] = []
    parts = text.split("\n")
    for k, part in enumerate(parts):
        cells = part.split("\t")
        if k + 1 == len(parts) and cells[-1] == "":
            cells.pop()  # Flush adds the unterminated last cell only when it is not empty
        lines.append([(c, _cell_width(c)) for c in cells])

    def write_padding(textw: int, cellw: int) -> None:
        if padchar == "\t":
            if tabwidth:
                cellw = (cellw + tabwidth - 1) // tabwidth * tabwidth
                out.append("\t" * ((cellw - textw + tabwidth - 1) // tabwidth))
            return
        out.append(padchar * (cellw - textw))

    def write_lines(line0: int, line1: int, widths: list[int]) -> None:
        nw = len(widths)
        for i in range(line0, line1):
            for j, (s, w) in enumerate(lines[i]):
                out.append(s)
                if j < nw:
                    write_padding(w, widths[j])
            if i + 1 < len(lines):
                out.append("\n")

    def fmt(line0: int, line1: int, widths: list[int]) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this, widths)  # lines before this column's block
            line0 = this
            width = minwidth
            while this < line1:
                line = lines[this]
                if column >= len(line) - 1:
                    break
                width = max(width, line[column][1] + padding)
                this += 1
            fmt(line0, this, [*widths, width])  # the block, with this column's width known
            line0 = this
        write_lines(line0, line1, widths)

    fmt(0, len(lines), [])
    return "".join(out)
