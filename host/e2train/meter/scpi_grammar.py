"""How an IEEE 488.2 / SCPI instrument parses what it is sent, for the emulators.

An instrument does not answer "whatever it is asked": it matches each header against the
commands it implements and queues an error for the rest. This module is that matching, with
command patterns written as the manuals print them:

    ":NUMeric[:NORMal]:ITEM<x>"     upper case = the short form; the long form is the whole word;
                                     [..] an optional node; <x> a numeric suffix; case-insensitive

Rules (IEEE 488.2 program-message syntax, as IM WT310E-17EN ch. 5 "Programming Overview"
restates it for the WT300 series):

* A program message is one line; its message units are separated by ``;``.
* Each node of a header may be given in its short or its long form, in any case.
* A unit after ``;`` that does not start with ``:`` or ``*`` continues at the level of the
  previous unit's header (its last node replaced); a leading ``:`` starts from the root.
* Data follow the header after white space, separated by commas.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool
    suffix: bool


@dataclass(frozen=True)
class Pattern:
    text: str
    nodes: tuple[_Node, ...]
    query: bool


def compile_pattern(text: str) -> Pattern:
    """``":NUMeric[:NORMal]:VALue?"`` -> Pattern; nodes split at ':' (brackets kept with their node)."""
    body = text.strip()
    query = body.endswith("?")
    body = body.rstrip("?")
    nodes = []
    for m in re.finditer(r"\[:?[^\]]+\]|:?[^:\[]+", body):
        tok = m.group(0)
        opt = tok.startswith("[")
        word = tok.strip("[]").lstrip(":")
        suffix = word.endswith("<x>")
        word = word[:-3] if suffix else word
        short = "".join(c for c in word if c.isupper() or c == "*") or word.upper()
        nodes.append(_Node(short, word.upper(), opt, suffix))
    return Pattern(text, tuple(nodes), query)


def _node_matches(node: _Node, word: str) -> tuple[bool, int | None]:
    w = word.upper()
    suffix = None
    if node.suffix:
        m = re.fullmatch(r"([A-Z*]+)(\d*)", w)
        if not m:
            return False, None
        w, digits = m.group(1), m.group(2)
        suffix = int(digits) if digits else 1        # an omitted numeric suffix means 1
    return w in (node.short, node.long), suffix


def match(pattern: Pattern, words: list[str], query: bool) -> tuple[bool, list[int]]:
    """Whether header words (already split at ':') name this pattern; the numeric suffixes found."""
    if query != pattern.query:
        return False, []

    def go(i: int, j: int, sfx: list[int]):
        if i == len(pattern.nodes):
            return (j == len(words)), sfx
        node = pattern.nodes[i]
        if j < len(words):
            ok, s = _node_matches(node, words[j])
            if ok:
                found, out = go(i + 1, j + 1, sfx + ([s] if s is not None else []))
                if found:
                    return True, out
        if node.optional:
            return go(i + 1, j, sfx + ([1] if node.suffix else []))
        return False, []

    return go(0, 0, [])


@dataclass
class Unit:
    header: str          # as sent, e.g. ":NUM:NORM:ITEM1"
    words: list[str]     # the header's nodes, absolute (relative units resolved)
    query: bool
    args: list[str]


def split_message(line: str, previous: list[str] | None = None) -> list[Unit]:
    """One program message (a line without its terminator) -> its message units."""
    units = []
    prev = list(previous or [])
    for raw in line.split(";"):
        raw = raw.strip()
        if not raw:
            continue
        head, _, data = raw.partition(" ")
        query = head.endswith("?")
        head = head.rstrip("?")
        if head.startswith("*"):
            words = [head]
        elif head.startswith(":") or not prev:
            words = [w for w in head.split(":") if w]
        else:
            words = prev[:-1] + [w for w in head.split(":") if w]
        if not head.startswith("*"):
            prev = words
        args = [a.strip() for a in data.split(",")] if data.strip() else []
        units.append(Unit(raw.partition(" ")[0], words, query, args))
    return units


Handler = Callable[[list[int], list[str]], "bytes | None"]


class CommandTable:
    """The commands one instrument implements: pattern -> handler(suffixes, args) -> answer or None.

    ``execute(line)`` runs every unit of a program message and returns what the instrument
    sends back (the answers of its queries joined by ';', plus the terminator), or b"" when it
    sends nothing. A header it does not implement queues ``undefined`` in the error queue and
    is not answered (a command error: IM WT310E-17EN App. "Error Messages", SCPI-99 -113); a handler signals a bad
    parameter by raising ``ParameterError`` (queued the same way).
    """

    def __init__(self, undefined: tuple[int, str], terminator: bytes = b"\n"):
        self.entries: list[tuple[Pattern, Handler]] = []
        self.errors: list[tuple[int, str]] = []
        self.undefined = undefined
        self.terminator = terminator

    def add(self, pattern: str, handler: Handler) -> None:
        self.entries.append((compile_pattern(pattern), handler))

    def execute(self, line: str) -> bytes:
        answers = []
        for u in split_message(line):          # each program message starts at the root
            for pat, fn in self.entries:
                ok, sfx = match(pat, u.words, u.query)
                if ok:
                    try:
                        out = fn(sfx, u.args)
                    except ParameterError as e:
                        self.errors.append(e.error)
                        out = None
                    if out is not None:
                        answers.append(out)
                    break
            else:
                self.errors.append(self.undefined)
        return (";".join(answers) + "\n").encode("latin-1") if answers else b""   # latin-1: block data carries bytes

    def pop_error(self) -> tuple[int, str]:
        return self.errors.pop(0) if self.errors else (0, "No error")


class ParameterError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.error = (code, message)
