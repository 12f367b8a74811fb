"""Prompt files: chat turns with ``$placeholders``, an answer start, and the answer each one must yield.

A prompt file holds ``#`` comment lines and sections: ``[system]``, then ``[user]`` and ``[assistant]`` turns
(worked examples, the last ``[user]`` being the real question), then ``[answer_start]``: text that a local
model's answer is made to begin with, which keeps small models on the JSON format.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from recbole_hnlm.errors import ConfigurationError

PROMPT_NAMES = ("item_profile", "user_profile", "negative")
PROFILE_PROMPTS = ("item_profile", "user_profile")
# The answer's keys that the pipeline reads: required ones must be non-empty strings; listed ones are lists.
REQUIRED_KEYS = {"item_profile": ("summary",), "user_profile": ("summary",), "negative": ("description",)}
OPTIONAL_STRING_KEYS = {"item_profile": (), "user_profile": (), "negative": ("title",)}
LIST_KEYS = {"item_profile": ("keywords",), "user_profile": ("likes", "dislikes"), "negative": ()}
PLACEHOLDERS = {
    "item_profile": ("item",),
    "user_profile": ("demographics", "history"),
    "negative": ("user_profile", "anchor"),
}
_SECTION = re.compile(r"^\[(system|user|assistant|answer_start)\]\s*$")
# An answer that copies a placeholder of the format (``<one sentence>``) instead of filling it in.
_PLACEHOLDER_COPY = re.compile(r"<[^<>]{2,}>")


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: chat messages, and the text a local model's answer starts with."""

    messages: list[dict]
    answer_start: str


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt file, parsed."""

    name: str
    path: Path
    turns: tuple[tuple[str, str], ...]
    answer_start: str

    @classmethod
    def read(cls, folder: Path, name: str) -> PromptTemplate:
        """Read ``<folder>/<name>.txt``, refusing a file without the sections the pipeline needs."""
        path = Path(folder) / f"{name}.txt"
        if not path.is_file():
            raise ConfigurationError(
                f"Prompt file {path} does not exist. Fix: set llm_prompt_dir to a folder holding "
                f"{', '.join(f'{prompt}.txt' for prompt in PROMPT_NAMES)} (copy recbole_hnlm/llm/prompts/ to start)."
            )
        turns: list[tuple[str, list[str]]] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            section = _SECTION.match(line)
            if section:
                turns.append((section.group(1), []))
            elif turns:
                turns[-1][1].append(line)
            elif line.strip() and not line.startswith("#"):
                raise ConfigurationError(f"{path}:{number}: text before the first [section]. Fix: start with [system].")
        texts = [(role, "\n".join(lines).strip()) for role, lines in turns]
        answer_start = next((text for role, text in texts if role == "answer_start"), "")
        chat = tuple((role, text) for role, text in texts if role != "answer_start")
        if not chat or chat[-1][0] != "user":
            raise ConfigurationError(f"{path}: the last chat turn must be a [user] turn (the question). Fix the file.")
        missing = [key for key in PLACEHOLDERS[name] if f"${key}" not in "".join(text for _, text in chat)]
        if missing:
            raise ConfigurationError(
                f"{path}: placeholder(s) {', '.join('$' + key for key in missing)} are not used, so the model would "
                "never see that input. Fix: put them in the last [user] turn."
            )
        return cls(name, path, chat, answer_start)

    def render(self, **values: str) -> Prompt:
        """Fill in the placeholders; an unknown ``$name`` in the file is refused with the valid names."""
        try:
            messages = [{"role": role, "content": Template(text).substitute(values)} for role, text in self.turns]
        except (KeyError, ValueError) as error:
            raise ConfigurationError(
                f"{self.path}: unknown placeholder {error}. Valid placeholders: "
                f"{', '.join('$' + key for key in PLACEHOLDERS[self.name])} (write $$ for a literal $)."
            ) from None
        return Prompt(messages, self.answer_start)


def read_prompts(folder: Path) -> dict[str, PromptTemplate]:
    """All prompt templates in ``folder``."""
    return {name: PromptTemplate.read(folder, name) for name in PROMPT_NAMES}


def prompt_hash(folder: Path, names: tuple[str, ...]) -> str:
    """A short hash of the named prompt files' bytes, naming the cache folder (or subfolder) they write."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (Path(folder) / f"{name}.txt").read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def usable_answer(name: str, answer: dict | None) -> tuple[dict | None, str]:
    """The answer's fields the pipeline reads, cleaned, or None and the reason it is unusable."""
    if answer is None:
        return None, "no JSON object in the answer"
    cleaned: dict = {}
    for key in REQUIRED_KEYS[name] + OPTIONAL_STRING_KEYS[name]:
        value = answer.get(key)
        text = " ".join(value.split()) if isinstance(value, str) else ""
        if _PLACEHOLDER_COPY.search(text):
            return None, f"'{key}' copies a placeholder of the format: {text[:80]!r}"
        if key in REQUIRED_KEYS[name] and not text:
            return None, f"'{key}' is missing or empty"
        if text:
            cleaned[key] = text
    for key in LIST_KEYS[name]:
        value = answer.get(key, [])
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        words = [" ".join(item.split()) for item in items if isinstance(item, str) and item.strip()]
        cleaned[key] = [word for word in dict.fromkeys(words) if not _PLACEHOLDER_COPY.search(word)][:8]
    return cleaned, ""
