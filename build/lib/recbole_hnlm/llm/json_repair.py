"""A tolerant reader of the JSON object in an LLM's answer.

Small models wrap JSON in code fences and prose, use single quotes or Python literals, leave trailing commas,
and stop mid-string when ``max_new_tokens`` runs out. ``parse_llm_json`` repairs these and returns the first
JSON object of the answer, or None when nothing usable is there. It never invents content: a value cut off
mid-string keeps the part that was written, and a key left without a value is dropped. When the structure is
beyond repair (small models write unescaped quotes inside strings: ``"summary": "the series "Kolya" is..."``),
the string fields are salvaged one by one, each ending at a quote followed by ``,``, ``}`` or ``]``.
"""

from __future__ import annotations

import json
import re

_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null"}
_BARE_WORD = re.compile(r"[^\W\d][\w\-]*")
# A dangling end left by a cut-off answer: a comma, or a key with or without its colon.
_DANGLING_END = re.compile(r'(,\s*"(?:[^"\\]|\\.)*"\s*:?\s*|,\s*|"(?:[^"\\]|\\.)*"\s*:\s*)$')
_STRING_FIELD = re.compile(r'"([A-Za-z_][\w \-]*)"\s*:\s*"(.*?)(?:"\s*(?=[,}\]])|$)', re.S)


def parse_llm_json(text: str) -> dict | None:
    """The first non-empty JSON object in ``text``, repaired or salvaged where needed; None when there is none."""
    start = text.find("{")
    while start >= 0:
        candidate = text[start:]
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
        except json.JSONDecodeError:
            try:
                value = json.loads(_repair(candidate))
            except json.JSONDecodeError:
                value = _salvage_string_fields(candidate)
        if isinstance(value, dict) and value:
            return value
        start = text.find("{", start + 1)
    return None


def _salvage_string_fields(text: str) -> dict | None:
    """The ``"key": "value"`` pairs of a JSON-like text whose structure is broken; None when there are none."""
    fields: dict[str, str] = {}
    for key, value in _STRING_FIELD.findall(text):
        fields.setdefault(key, " ".join(value.replace('\\"', '"').replace("\\n", " ").split()))
    return fields or None


def json_object_complete(text: str) -> bool:
    """Whether ``text`` holds a JSON-like object whose outermost brace has closed (strings and quotes respected)."""
    depth = 0
    quote = ""
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char == '"':
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False


def _repair(text: str) -> str:
    """Rewrite a JSON-like object (starting at its ``{``) into JSON, stopping where the object closes."""
    out: list[str] = []
    closers: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and index + 1 < len(text):
                following = text[index + 1]
                out.append(following if following == "'" else char + following)
                index += 2
                continue
            if char == quote and not _apostrophe_inside_word(text, index, quote):
                out.append('"')
                quote = ""
            elif char == '"':
                out.append('\\"')
            elif char in "\n\r\t":
                out.append(" ")
            else:
                out.append(char)
        elif char in "\"'":
            quote = char
            out.append('"')
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
            out.append(char)
        elif char in "}]":
            _drop_trailing_comma(out)
            if closers:
                out.append(closers.pop())
                if not closers:
                    return "".join(out)
        elif (char.isalpha() or char == "_") and not (out and (out[-1][-1:].isdigit() or out[-1] == ".")):
            word = _BARE_WORD.match(text, index).group()
            if word in ("true", "false", "null"):
                out.append(word)
            else:
                out.append(_PYTHON_LITERALS.get(word, json.dumps(word)))
            index += len(word)
            continue
        else:
            out.append(char)
        index += 1
    if quote:
        out.append('"')
    repaired = "".join(out).rstrip()
    repaired = _DANGLING_END.sub("", repaired) if closers and closers[-1] == "}" else repaired.rstrip(", ")
    return repaired + "".join(reversed(closers))


def _apostrophe_inside_word(text: str, index: int, quote: str) -> bool:
    """A single quote between two letters (``Children's``) inside a single-quoted string is an apostrophe."""
    return quote == "'" and 0 < index < len(text) - 1 and text[index - 1].isalpha() and text[index + 1].isalpha()


def _drop_trailing_comma(out: list[str]) -> None:
    """Remove a comma (and the whitespace after it) at the end of ``out``, as before a closing bracket."""
    position = len(out) - 1
    while position >= 0 and out[position].isspace():
        position -= 1
    if position >= 0 and out[position] == ",":
        del out[position:]
