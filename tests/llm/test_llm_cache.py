"""The cache: resuming after a crash gives what an uninterrupted run gives; foreign caches are refused."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from llm_testdata import SMOLLM2, TINY, cache_files, load_split, write_tiny_ml100k

from recbole_hnlm.errors import BackendUnavailableError, CacheMismatchError
from recbole_hnlm.llm import build_semantic_cache, load_semantic_cache
from recbole_hnlm.llm.backends import MINILM_PACKAGE, TextEmbedder, installed_package_folder
from recbole_hnlm.llm.cache import CacheFolder, fill_array_in_chunks


class Crash(RuntimeError):
    """The simulated crash."""


def test_resume_after_a_crash_gives_the_same_cache(tiny_config, tiny_split, reuse_smollm2, tmp_path, monkeypatch):
    _, train, held_out = tiny_split
    small = {**SMOLLM2, "llm_shard_size": 4, "llm_vector_chunk": 8, "llm_negative_budget": 5}
    straight = build_semantic_cache(tiny_config(**small, llm_cache_dir=str(tmp_path / "a")), train, held_out)

    calls = []
    real_generate = reuse_smollm2.generate

    def crash_on_third_call(prompts, attempt=0):
        calls.append(len(prompts))
        if len(calls) == 3:
            raise Crash("simulated crash while generating")
        return real_generate(prompts, attempt)

    config = tiny_config(**small, llm_cache_dir=str(tmp_path / "b"))
    monkeypatch.setattr(reuse_smollm2, "generate", crash_on_third_call)
    with pytest.raises(Crash):
        build_semantic_cache(config, train, held_out)
    resumed = straight.parents[3] / "b" / TINY / straight.parent.name / straight.name
    saved_before = len(list((resumed / "profiles" / "items").glob("shard-*.jsonl")))
    assert 1 <= saved_before < 5 and not list(resumed.rglob("*.tmp"))
    monkeypatch.setattr(reuse_smollm2, "generate", real_generate)

    encoded = []
    real_encode = TextEmbedder.encode

    def crash_on_second_chunk(self, texts):
        encoded.append(len(texts))
        if len(encoded) == 2:
            raise Crash("simulated crash while embedding")
        return real_encode(self, texts)

    monkeypatch.setattr(TextEmbedder, "encode", crash_on_second_chunk)
    with pytest.raises(Crash):
        build_semantic_cache(config, train, held_out)
    answered = json.loads((resumed / "manifest.json").read_text())["stages"]["item_profiles"]
    assert answered["units_answered_last_run"] == train.item_num - 1 - 4 * saved_before  # nothing redone
    assert (resumed / "vectors" / "item_profile_vectors.partial.npy").is_file()
    assert not (resumed / "vectors" / "item_profile_vectors.npy").exists()
    monkeypatch.setattr(TextEmbedder, "encode", real_encode)

    assert build_semantic_cache(config, train, held_out) == resumed
    assert cache_files(resumed) == cache_files(straight)
    assert not list(resumed.rglob("*.partial.npy")) and not list(resumed.rglob("*.progress.json"))


def test_an_interrupted_array_fill_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "vectors.npy"
    filled = []

    def fill(start, end):
        filled.append(start)
        if start == 20 and len(filled) == 3:
            raise Crash("stop")
        return np.arange(start, end, dtype=np.float32)[:, None].repeat(2, axis=1)

    with pytest.raises(Crash):
        fill_array_in_chunks(path, (35, 2), np.float32, 10, fill, "test")
    assert not path.exists() and filled == [0, 10, 20]
    fill_array_in_chunks(path, (35, 2), np.float32, 10, fill, "test")
    assert filled == [0, 10, 20, 20, 30]
    np.testing.assert_array_equal(np.load(path)[:, 0], np.arange(35))


def test_a_cache_of_another_dataset_is_refused(tiny_config, tiny_split, tiny_root, tmp_path):
    _, train, held_out = tiny_split
    made = build_semantic_cache(tiny_config(llm="template"), train, held_out, stages=("profiles",))
    write_tiny_ml100k(tiny_root, "ml-100k-tiny2")
    other_config, other_train, other_held_out = load_split(
        "ml-100k-tiny2", data_path=str(tiny_root), llm="template", llm_cache_dir=str(tmp_path / "cache")
    )
    copied = made.parents[2] / "ml-100k-tiny2" / made.parent.name / made.name  # same split, another dataset's name
    shutil.copytree(made, copied)
    with pytest.raises(
        CacheMismatchError,
        match=rf"Cache folder {copied} was made from.*dataset: cached 'ml-100k-tiny', asked 'ml-100k-tiny2'.*Fix:",
    ):
        build_semantic_cache(other_config, other_train, other_held_out)
    with pytest.raises(CacheMismatchError, match="dataset: cached 'ml-100k-tiny', asked 'ml-100k-tiny2'"):
        load_semantic_cache(other_config, other_train, other_held_out, build=False)


def test_vectors_of_another_embedding_size_are_refused(tiny_config, tiny_split, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    _, train, held_out = tiny_split
    made = build_semantic_cache(tiny_config(llm="template"), train, held_out, stages=("profiles",))
    minilm = SentenceTransformer(str(installed_package_folder(MINILM_PACKAGE, "", "test") / "model"), device="cpu")
    smaller = SentenceTransformer(modules=[*minilm, Dense(384, 128)], device="cpu")
    other = tmp_path / "minilm-128"
    smaller.save(str(other))
    with pytest.raises(CacheMismatchError, match=r"'all-MiniLM-L6-v2' \(384-d\), but this run asks for 'minilm-128'"):
        build_semantic_cache(tiny_config(llm="template", llm_embedding_model=str(other)), train, held_out)
    # The same name with another size is caught when the model loads, before any vector is written.
    renamed = tmp_path / "all-MiniLM-L6-v2"
    other.rename(renamed)
    shutil.rmtree(made / "vectors")
    with pytest.raises(
        CacheMismatchError, match=rf"{made} holds vectors from.*asks for 'all-MiniLM-L6-v2' \(128-d\).*Fix: delete"
    ):
        build_semantic_cache(tiny_config(llm="template", llm_embedding_model=str(renamed)), train, held_out)


def test_each_seeds_split_gets_its_own_folder_and_reuses_the_item_profiles(tiny_root, tmp_path, monkeypatch):
    # RecBole's random split follows the seed: a run with another seed must neither be refused nor overwrite the
    # first split's user profiles and negatives, and must not pay for the (split-free) item profiles again.
    from recbole_hnlm.llm import pipeline

    copied = []
    real_reuse = pipeline.reuse_item_profiles
    monkeypatch.setattr(pipeline, "reuse_item_profiles", lambda *args: copied.append(real_reuse(*args)) or copied[-1])
    cache_dir = str(tmp_path / "cache")
    folders = []
    for seed in (2020, 7):
        config, train, held_out = load_split(
            TINY, data_path=str(tiny_root), llm="template", llm_cache_dir=cache_dir, llm_shard_size=4, seed=seed
        )
        folders.append(build_semantic_cache(config, train, held_out))
        opened = load_semantic_cache(config, train, held_out, build=False)
        assert opened.folder.path == folders[-1]
    first, second = folders
    assert first != second and first.parent == second.parent
    assert (
        CacheFolder(first).read_manifest()["inputs"]["train_split_sha256"]
        != (CacheFolder(second).read_manifest()["inputs"]["train_split_sha256"])
    )
    assert copied[0] == 0 and copied[1] == len(list((first / "profiles" / "items").glob("shard-*.jsonl"))) > 0
    for shard in (first / "profiles" / "items").glob("shard-*.jsonl"):
        assert (second / "profiles" / "items" / shard.name).read_bytes() == shard.read_bytes()
    assert (first / "negatives" / "pair_keys.npy").read_bytes() != (second / "negatives" / "pair_keys.npy").read_bytes()


class CannedChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose every answer is one fixed profile."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        message = {"role": "assistant", "content": '{"summary": "A film people enjoy."}'}
        body = json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_failed_first_try_claims_nothing(tiny_config, tiny_split, tmp_path):
    _, train, held_out = tiny_split
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        wrong = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    quick = {"llm_model": "m", "llm_request_retries": 1, "llm_request_timeout": 2, "llm_shard_size": 4}
    with pytest.raises(BackendUnavailableError, match=wrong):
        build_semantic_cache(tiny_config(llm=f"openai:{wrong}", **quick), train, held_out, stages=("profiles",))

    server = HTTPServer(("127.0.0.1", 0), CannedChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    right = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        folder = build_semantic_cache(tiny_config(llm=f"openai:{right}", **quick), train, held_out, ("profiles",))
    finally:
        server.shutdown()
        server.server_close()
    assert CacheFolder(folder).read_manifest()["generator"]["base_url"] == right

    # Once it holds answers, the folder is refused to other settings.
    with pytest.raises(CacheMismatchError, match="generator.base_url"):
        build_semantic_cache(tiny_config(llm=f"openai:{wrong}", **quick), train, held_out, stages=("profiles",))


def test_a_folder_without_answers_is_reclaimed_and_one_with_answers_refused(tmp_path):
    folder = CacheFolder(tmp_path / "split-x")
    old, new = {"format": 1, "generator": {"base_url": "old"}}, {"format": 1, "generator": {"base_url": "new"}}
    folder.claim(old)
    (folder.path / "item_tokens.txt").write_text("[PAD]\n")
    assert folder.claim(new)["generator"] == {"base_url": "new"}
    assert not (folder.path / "item_tokens.txt").exists()  # written again from the new inputs

    (folder.path / "profiles" / "items").mkdir(parents=True)
    (folder.path / "profiles" / "items" / "shard-000000000-000000004.jsonl").write_text("{}\n")
    with pytest.raises(CacheMismatchError, match="generator.base_url: cached 'new', asked 'old'"):
        folder.claim(old)
