"""The one atomic writer: every file the plugin writes appears whole or not at all, with the user's umask.

Strict JSON everywhere: NaN and infinities are written as null, since strict readers reject them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, flush it to disk and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; a written file gets the permissions any other file of the user gets.
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(
            handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})
        ) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    atomic_write(path, lambda stream: stream.write(text))


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (recursively through dicts, lists, tuples)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def json_text(payload: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``payload``; values JSON has no type for are written as their ``str``."""
    return json.dumps(strict_json(payload), indent=indent, sort_keys=sort_keys, default=str, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as strict, indented JSON, atomically."""
    write_text_atomic(path, json_text(payload) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records) -> None:
    """Write one strict JSON object per line, atomically."""
    write_text_atomic(
        path,
        "".join(
            json.dumps(strict_json(record), ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
            for record in records
        ),
    )
