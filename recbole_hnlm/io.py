"""Atomic file writers: a reader or a resumed run never sees half a file, and files get the user's umask.

A file is written under a unique temporary name beside its target and renamed into place. The temporary file is
created with mode 0666 filtered by the process umask, as ``open()`` does (``tempfile.mkstemp`` would make it 0600).
JSON is strict: NaN and infinities, which strict readers reject, are written as null.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_binary_stream(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary stream whose content replaces ``path`` whole when the block ends without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_binary_stream(path) as stream:
        stream.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_or_none(value: Any) -> Any:
    """``value`` with NaN and infinities inside (dicts, lists, tuples) as None, and numpy numbers as Python's."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy integers too, which json would otherwise write as strings
    return float(value) if math.isfinite(value) else None


def strict_json(payload: Any, indent: int | None = 2, default: Callable[[Any], Any] = str, **options) -> str:
    """``payload`` as strict JSON: NaN and infinities become null; other values JSON lacks go through ``default``."""
    return json.dumps(finite_or_none(payload), indent=indent, default=default, allow_nan=False, **options)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Replace ``path`` with ``payload`` as strict, indented JSON, atomically."""
    write_text_atomic(path, strict_json(payload))


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """Replace ``path`` with what ``write(stream)`` writes: a binary stream, or a UTF-8 text stream (no newline
    translation, so a CSV writer's line ends stay as written)."""
    with atomic_binary_stream(path) as stream:
        if binary:
            write(stream)
            return
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        write(text)
        text.flush()
        text.detach()


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Replace ``path`` with one strict JSON object per line, atomically."""
    lines = (strict_json(record, indent=None, ensure_ascii=False, sort_keys=True) + "\n" for record in records)
    write_text_atomic(path, "".join(lines))
