"""The atomic writers: strict JSON, the user's umask, and no temporary file left behind on failure."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from recbole_hnlm.io import atomic_binary_stream, write_json_atomic, write_text_atomic
from recbole_hnlm.llm.cache import write_array_atomic, write_jsonl_atomic


def test_json_has_no_nan_or_infinity(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"best": -math.inf, "scores": [np.float32(0.5), math.nan], "n": np.int64(3), "ok": True})

    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"best": None, "scores": [0.5, None], "n": 3, "ok": True}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        write_text_atomic(tmp_path / "b.txt", "x")
        write_jsonl_atomic(tmp_path / "c.jsonl", [{"x": 1}])
        write_array_atomic(tmp_path / "d.npy", np.zeros(3))
    finally:
        os.umask(before)
    for name in ("a.json", "b.txt", "c.jsonl", "d.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "kept.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_binary_stream(path) as stream:
        stream.write(b"half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["kept.txt"]
