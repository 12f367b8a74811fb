"""Stage 1 on real data: item and user profiles, by rule and by smollm2, from the training split only."""

from __future__ import annotations

import json

import numpy as np
from llm_testdata import SMOLLM2, TINY

from recbole_hnlm.llm import LLMSettings, build_semantic_cache
from recbole_hnlm.llm.cache import CacheFolder, read_jsonl
from recbole_hnlm.llm.catalogue import Catalogue
from recbole_hnlm.llm.profiles import ITEM_VECTORS, USER_VECTORS, budget_users, item_store, user_store


def test_template_profiles_and_their_manifest(tiny_config, tiny_split):
    config = tiny_config(llm="template")
    _, train, held_out = tiny_split
    folder = build_semantic_cache(config, train, held_out, stages=("profiles",))
    assert folder.parent.name == "template-rules-v1" and folder.parent.parent.name == TINY
    assert folder.name == f"split-{CacheFolder(folder).read_manifest()['inputs']['train_split_sha256'][:12]}"
    items = [record for path in sorted((folder / "profiles" / "items").glob("*.jsonl")) for record in read_jsonl(path)]
    assert [record["id"] for record in items] == list(range(1, train.item_num))
    toy_story = next(record for record in items if record["token"] == "1")
    assert toy_story["status"] == "template"
    assert toy_story["text"] == "Toy Story (1995). Categories: Animation, Children's, Comedy."
    item_vectors = np.load(folder / ITEM_VECTORS, mmap_mode="r")
    assert item_vectors.shape == (train.item_num, 384) and not item_vectors[0].any()
    np.testing.assert_allclose(np.linalg.norm(item_vectors[1:], axis=1), 1.0, rtol=1e-5)
    assert np.load(folder / USER_VECTORS, mmap_mode="r").shape == (train.user_num, 384)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dataset"] == TINY and manifest["generator"] == {"backend": "template", "model": "rules-v1"}
    assert manifest["embedding"] == {"model": "all-MiniLM-L6-v2", "dim": 384}
    assert manifest["inputs"]["n_items"] == train.item_num and manifest["inputs"]["n_users"] == train.user_num
    assert manifest["stages"]["item_profiles"]["template"] == train.item_num - 1
    assert (folder / "item_tokens.txt").read_text().split("\n")[: train.item_num] == list(
        train.field2id_token[train.iid_field]
    )


def test_user_histories_hold_training_items_only(tiny_split):
    config, train, held_out = tiny_split
    catalogue = Catalogue.from_split(config, train, held_out, LLMSettings.from_config(config))
    users, items = train.inter_feat[train.uid_field].numpy(), train.inter_feat[train.iid_field].numpy()
    for user in range(1, train.user_num):
        trained = set(items[users == user].tolist())
        history = set(catalogue.recent_history(user, 100).tolist())
        held = set(catalogue.held_out_items_of(user).tolist())
        assert history == trained and held and not held & trained
        profile = catalogue.user_facts(user, 100)
        for item in held:
            assert catalogue.item_titles[item] not in profile


def test_smollm2_profiles_record_answers_and_failures(tiny_config, tiny_split, reuse_smollm2, smollm2_cache_dir):
    config = tiny_config(**SMOLLM2, llm_cache_dir=smollm2_cache_dir)
    _, train, held_out = tiny_split
    folder = build_semantic_cache(config, train, held_out, stages=("profiles",))
    assert folder.parent.name.startswith("smollm2-SmolLM2-135M-Instruct.Q4_1-")
    settings = LLMSettings.from_config(config)
    cache = CacheFolder(folder)
    items = item_store(cache, settings).read(train.item_num - 1)
    users = user_store(cache, settings).read(train.user_num - 1)
    for record in items + users:
        assert record["status"] in ("ok", "failed") and 1 <= record["attempts"] <= 2
        assert len(record["raw"]) == record["attempts"]
        if record["status"] == "ok":
            assert record["answer"]["summary"] in record["text"] and not record["reason"]
        else:
            assert record["answer"] is None and record["reason"]
    assert any(record["status"] == "ok" for record in items)
    catalogue = Catalogue.from_split(config, train, held_out, settings)
    assert all(record["text"].startswith(catalogue.item_facts[record["id"]]) for record in items)
    stages = json.loads((folder / "manifest.json").read_text())["stages"]
    assert stages["item_profiles"]["ok"] + stages["item_profiles"]["failed"] == train.item_num - 1
    assert stages["user_profiles"]["ok"] + stages["user_profiles"]["failed"] == train.user_num - 1


def test_user_profile_budget_asks_the_llm_for_the_budget_users_only(
    tiny_config, tiny_split, reuse_smollm2, smollm2_cache_dir
):
    _, train, held_out = tiny_split
    full = build_semantic_cache(
        tiny_config(**SMOLLM2, llm_cache_dir=smollm2_cache_dir), train, held_out, stages=("profiles",)
    )
    config = tiny_config(
        **SMOLLM2, llm_cache_dir=smollm2_cache_dir, llm_user_profile_scope="budget", llm_negative_budget=3
    )
    folder = build_semantic_cache(config, train, held_out, stages=("profiles",))
    assert folder.parent == full.parent and folder.name == f"{full.name}-llm-users-user-3"
    settings = LLMSettings.from_config(config)
    catalogue = Catalogue.from_split(config, train, held_out, settings)
    chosen = budget_users(catalogue, settings)
    users = user_store(CacheFolder(folder), settings).read(train.user_num - 1)
    assert len(chosen) == 3 and chosen <= {record["id"] for record in users}
    for record in users:
        if record["id"] in chosen:
            assert record["status"] in ("ok", "failed") and record["raw"]
        else:
            assert record["status"] == "template" and record["text"] == catalogue.user_facts(
                record["id"], settings.history_len
            )
    # Item profiles do not depend on whose profiles the LLM writes: copied from the full folder, not regenerated.
    for shard in (full / "profiles" / "items").glob("*.jsonl"):
        assert (folder / "profiles" / "items" / shard.name).read_bytes() == shard.read_bytes()
    stages = json.loads((folder / "manifest.json").read_text())["stages"]
    assert stages["user_profiles"]["template"] == train.user_num - 1 - 3
