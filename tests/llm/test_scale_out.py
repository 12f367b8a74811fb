"""Scale-out of the LLM stages: two workers on a real local Ray build the same cache as one process."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from llm_testdata import TINY, cache_files

from recbole_hnlm.errors import ModelNotFoundError
from recbole_hnlm.llm import build_semantic_cache
from recbole_hnlm.llm.__main__ import main
from recbole_hnlm.llm.backends import MINILM_NAME
from recbole_hnlm.llm.distributed import RECORD_SHARDS, VECTOR_CHUNKS, ShardWorkers

ray = pytest.importorskip("ray")

# 19 items and 8 users in shards of 4 units: 5 + 2 shard files; 20 + 9 vector rows in chunks of 4: 5 + 3 chunks.
SMALL = {"llm": "template", "llm_shard_size": 4, "llm_vector_chunk": 4}
# Rewritten by every run, with the same content: the driver's closing steps, not work.
CLOSING_FILES = ("manifest.json", "negatives/summary.json")


def file_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, modification time) of every file but the closing ones: a file made again gets new ones."""
    stamps = {path.relative_to(folder).as_posix(): path.stat() for path in folder.rglob("*") if path.is_file()}
    return {name: (stat.st_ino, stat.st_mtime_ns) for name, stat in stamps.items() if name not in CLOSING_FILES}


def test_two_ray_workers_build_the_same_cache_as_one_process(tiny_config, tiny_split, tmp_path):
    _, train, held_out = tiny_split
    alone = build_semantic_cache(tiny_config(**SMALL, llm_cache_dir=str(tmp_path / "alone")), train, held_out)

    config = tiny_config(**SMALL, llm_cache_dir=str(tmp_path / "ray"))
    with ShardWorkers("local", n_workers=2) as workers:
        sharded = build_semantic_cache(config, train, held_out, stages=("profiles",), workers=workers)
        shards, chunks = dict(workers.done[RECORD_SHARDS]), dict(workers.done[VECTOR_CHUNKS])
        assert sum(shards.values()) == 5 + 2 and sum(chunks.values()) == 5 + 3
        assert len(set(shards) | set(chunks)) == 2  # both workers took shards, each in its own process
        assert not any(name.endswith(f":{os.getpid()}") for name in shards)

        # A rerun after losing two item shards and the item vectors does those shards and chunks only.
        for shard in sorted((sharded / "profiles" / "items").glob("shard-*.jsonl"))[1:3]:
            shard.unlink()
        (sharded / "vectors" / "item_profile_vectors.npy").unlink()
        assert build_semantic_cache(config, train, held_out, workers=workers) == sharded
        assert sum(workers.done[RECORD_SHARDS].values()) == 7 + 2
        assert sum(workers.done[VECTOR_CHUNKS].values()) == 8 + 5
        assert workers.workers_started == 2

        # A worker's bad-input error reads as in one process; other settings get workers of their own.
        missing = tmp_path / "no-such-model"
        bad = tiny_config(**SMALL, llm_cache_dir=str(tmp_path / "bad"), llm_embedding_model=str(missing))
        with pytest.raises(ModelNotFoundError, match=f"Embedding model path {missing} does not exist"):
            build_semantic_cache(bad, train, held_out, workers=workers)
        assert workers.workers_started == 4
        config = tiny_config(**SMALL, llm_cache_dir=str(tmp_path / "ray"), llm_embedding_model=MINILM_NAME)
    assert not ray.is_initialized()  # the workers shut down the Ray they started
    assert cache_files(sharded) == cache_files(alone)  # byte for byte, float32 vectors included
    assert not list(sharded.rglob("*.chunks")) and not list(sharded.rglob("*.tmp"))

    before, closing = file_stamps(sharded), cache_files(sharded)
    with ShardWorkers("local", n_workers=2) as workers:
        assert build_semantic_cache(config, train, held_out, workers=workers) == sharded
    assert workers.workers_started == 0 and not ray.is_initialized()  # a finished cache starts no Ray
    assert file_stamps(sharded) == before and cache_files(sharded) == closing


def closed_loopback_address() -> str:
    """host:port on this machine where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_bad_ray_settings_are_refused_before_any_work(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = ["profiles", "--dataset", TINY, "--llm", "template", f"--data_path={tiny_root}", "--state=ERROR"]
    common.append(f"--llm_cache_dir={tmp_path / 'cache'}")
    address = closed_loopback_address()
    started = time.perf_counter()
    assert main([*common, f"--ray_address={address}"]) == 2
    assert time.perf_counter() - started < 15
    assert f"No Ray cluster answers at {address}" in capsys.readouterr().err
    assert main([*common, "--ray_address=local", "--ray_workers=0"]) == 2
    assert "--ray_workers=0 runs no worker" in capsys.readouterr().err
    assert main([*common, "--ray_workers=2"]) == 2
    assert "--ray_workers sizes a Ray run. Fix: add --ray_address=local" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not ray.is_initialized()
