"""benchmarks/claims_table.py: the rows, the best base chosen on validation, the verdicts at p < 0.05, --smoke."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import claims_table as ct  # noqa: E402

SEEDS = ("2020", "2021", "2022")
USER = {"text_filter": "user"}  # the filter row's settings without a chosen file


def records(recall: list[float], valid: list[float] | None = None, **others: list[float]) -> dict:
    """{seed: metrics} of one row: Recall@20 per seed, validation Recall@20, and any other metric per seed."""
    valid = valid or recall
    found = {}
    for index, seed in enumerate(SEEDS[: len(recall)]):
        found[seed] = {"recall@20": recall[index], ct.VALID: valid[index], "seconds_per_epoch": 1.0}
        for metric, values in others.items():
            found[seed][metric] = values[index]
    return found


def test_the_row_list_is_the_issues():
    assert ct.STAGE_1 == ("uniform", "dns", "dns_mn", "mixgcf")
    assert set(ct.STAGE_2) == {
        "filter",
        "hnlm-neighbour-untuned",
        "hnlm-generated-untuned",
        "hnlm-neighbour-finetuned",
        "hnlm-generated-finetuned",
        "rlmrec",
        "alpharec",
    }
    chain = {"llm": "template", "finetune_encoder": "minilm"}
    tuned = ct.row_run("hnlm-generated-finetuned", "mixgcf", USER, {"llm": "template"}, chain)
    assert (tuned.model, tuned.sampler, tuned.uses_chain) == ("LightGCN", "hnlm", True)
    assert tuned.settings == {
        **chain,
        "hnlm_base_negative": "mixgcf",
        "hnlm_negative_source": "generated",
        "hnlm_encoder": "finetuned",
        "finetune_seed": ct.CHAIN_SEED,
        "text_filter": "none",
    }
    assert ct.row_run("filter", "dns_mn", USER, {}, {}).settings == {"text_filter": "user"}
    assert ct.row_run("filter", "dns_mn", USER, {}, {}).sampler == "dns_mn"
    chosen = {"text_filter": "nearest_item", "text_filter_quantile": 0.6}
    assert ct.row_run("filter", "dns", chosen, {"llm": "template"}, {}).settings == {"llm": "template", **chosen}
    rlmrec = ct.row_run("rlmrec", "dns", USER, {}, {})
    # The baselines train on uniform negatives, as published, whatever the best base.
    assert (rlmrec.model, rlmrec.sampler, rlmrec.settings["backbone"]) == ("RLMRec", "uniform", "LightGCN")
    alpharec = ct.row_run("alpharec", "dns", USER, {}, {})
    assert (alpharec.model, alpharec.sampler) == ("AlphaRec", "uniform")
    assert ct.row_run("dns", None, USER, {}, chain).settings == ct.NO_FILTER  # no llm or chain settings
    for row in ct.ROWS:  # only the filter row filters, whatever text_filter a sampler's chosen settings hold
        run = ct.row_run(row, "dns", USER, {}, chain)
        assert run.settings["text_filter"] == ("user" if row == "filter" else "none")
    with pytest.raises(ValueError, match="best base"):
        ct.row_run("rlmrec", None, USER, {}, {})


def test_the_best_base_is_picked_on_validation_not_test():
    found = {
        "dns": records([0.40, 0.41, 0.42], valid=[0.30, 0.31, 0.30]),  # best on test
        "mixgcf": records([0.38, 0.39, 0.38], valid=[0.33, 0.34, 0.33]),  # best on validation
        "uniform": records([0.30, 0.31, 0.30]),
    }
    summary = ct.summarise(found)
    assert max(("dns", "mixgcf"), key=lambda row: summary[row]["recall@20"]["mean"]) == "dns"
    assert ct.pick_best_base({row: entry[ct.VALID]["mean"] for row, entry in summary.items()}) == "mixgcf"
    assert ct.pick_best_base({"hnlm-neighbour-untuned": 0.9, "dns": 0.1}) == "dns"  # stage 1 only
    assert ct.pick_best_base({}) is None


def test_a_row_ahead_at_p_below_005_holds_and_at_p_02_does_not():
    base = records([0.300, 0.310, 0.320])
    clear = records([0.320, 0.331, 0.340])  # +0.020, +0.021, +0.020
    noisy = records([0.330, 0.330, 0.320])  # +0.03, +0.02, 0: ahead on the mean, p about 0.2
    summary = ct.summarise({"base": base, "clear": clear, "noisy": noisy})
    held = ct.better(summary["clear"], summary["base"], "recall@20")
    assert held["p"] < 0.05 and held["holds"] is True
    loose = ct.better(summary["noisy"], summary["base"], "recall@20")
    assert summary["noisy"]["recall@20"]["mean"] > summary["base"]["recall@20"]["mean"]
    assert 0.1 < loose["p"] < 0.3 and loose["holds"] is False
    behind = ct.better(summary["base"], summary["clear"], "recall@20")
    assert behind["p"] < 0.05 and behind["holds"] is False  # significant, the wrong way
    one_seed = ct.summarise({"a": records([0.3]), "b": records([0.2])})
    assert ct.better(one_seed["a"], one_seed["b"], "recall@20")["holds"] is None


def test_a_lower_false_hard_negative_rate_is_the_better_one():
    summary = ct.summarise(
        {
            "tuned": records([0.3, 0.3, 0.3], false_hard_negative_rate=[0.10, 0.11, 0.10]),
            "base": records([0.3, 0.3, 0.3], false_hard_negative_rate=[0.20, 0.22, 0.21]),
        }
    )
    assert ct.better(summary["tuned"], summary["base"], ct.FHN)["holds"] is True


def full_summary(tuned_gain: float) -> dict:
    """Every row on three seeds: the fine-tuned rows ``tuned_gain`` ahead of the best base, mixgcf."""
    noise = [0.000, 0.001, -0.001]
    rows = {
        "uniform": 0.30,
        "dns": 0.36,
        "dns_mn": 0.37,
        "mixgcf": 0.38,
        "filter": 0.38,
        "hnlm-neighbour-untuned": 0.35,
        "hnlm-generated-untuned": 0.34,
        "hnlm-neighbour-finetuned": 0.38 + tuned_gain,
        "hnlm-generated-finetuned": 0.37,
        "rlmrec": 0.36,
        "alpharec": 0.33,
    }
    found = {}
    for row, level in rows.items():
        values = [level + shift * (2 if row.endswith("untuned") else 1) for shift in noise]
        if row == "hnlm-neighbour-finetuned":
            values = [level + 0.000, level + 0.002, level - 0.001]
        found[row] = records(
            values,
            **{
                "recall@20_sparse_users": [value + 0.1 for value in values],
                "recall@20_long_tail": [value - 0.3 for value in values],
                ct.FHN: [0.2 - value / 10 for value in values],
            },
        )
    return ct.summarise(found)


def test_the_three_claims_are_computed_from_the_numbers():
    found = ct.claims(full_summary(tuned_gain=0.02), "mixgcf")
    assert [claim["number"] for claim in found] == [1, 2, 3]
    first, second, third = found
    assert first["row"] == "hnlm-neighbour-untuned" and first["holds"] is True  # beats uniform, trails mixgcf
    assert second["row"] == "hnlm-neighbour-finetuned" and second["holds"] is True
    assert {part["b_row"] for part in second["parts"]} == {"mixgcf", "rlmrec", "alpharec"}
    assert third["holds"] is True and {part["metric"] for part in third["parts"]} == {
        "recall@20_sparse_users",
        "recall@20_long_tail",
        ct.FHN,
    }

    behind = ct.claims(full_summary(tuned_gain=-0.02), "mixgcf")
    assert behind[1]["holds"] is False and behind[2]["holds"] is False
    text = ct.claims_text("ml-100k", behind)
    assert "claim 2" in text and "**does not hold**" in text and "p = " in text


def test_a_claim_with_a_row_not_run_is_undecided_unless_a_part_already_fails():
    summary = full_summary(tuned_gain=0.02)
    del summary["alpharec"]
    second = ct.claims(summary, "mixgcf")[1]
    assert second["holds"] is None and "alpharec not run" in second["missing"][0]
    summary = full_summary(tuned_gain=-0.02)
    del summary["alpharec"]
    assert ct.claims(summary, "mixgcf")[1]["holds"] is False  # it fails against mixgcf already


def test_rows_not_run_are_named_with_their_reason():
    summary = ct.summarise({"uniform": records([0.3, 0.31, 0.3]), "dns": records([0.35, 0.36, 0.37])})
    table = ct.dataset_table(
        "ml-100k",
        summary,
        ct.row_titles("dns", USER),
        {"alpharec": "not in --rows (run it with --rows=alpharec)"},
        "dns",
    )
    assert "best base on validation: dns" in table
    assert "| AlphaRec (uniform negatives) | 0 | not run: not in --rows" in table
    assert "| dns | 3 | 0.3600 ± 0.0100 |" in table
    assert "dns + text filter (user, defaults) | 0 | not run: no finished run" in table
    chosen = ct.row_titles("dns", {"text_filter": "user", "text_filter_quantile": 0.9423, "text_filter_weight": 0.6})
    assert chosen["filter"] == "dns + text filter (user, quantile 0.94, weight 0.60)"
    dropping = {"text_filter": "user", "text_filter_mode": "drop", "text_filter_weight": 0.6}
    assert ct.row_titles("dns", dropping)["filter"] == "dns + text filter (user, mode drop)"


def test_the_filter_row_reads_the_settings_chosen_on_validation(tmp_path, monkeypatch):
    """A chosen text_filter.yaml wins over --text_filter; without one the row is the mode at its defaults."""
    monkeypatch.setattr(ct, "properties_file", lambda *parts: tmp_path.joinpath(*parts))
    assert ct.filter_settings("ml-100k", "user") == USER
    chosen = tmp_path / "dataset" / "ml-100k" / "text_filter.yaml"
    chosen.parent.mkdir(parents=True)
    chosen.write_text("text_filter: nearest_item\ntext_filter_quantile: 0.6\n")
    assert ct.filter_settings("ml-100k", "user") == {"text_filter": "nearest_item", "text_filter_quantile": 0.6}


def test_smoke_arguments():
    args, settings, llm, chain = ct.parse_arguments(["--smoke"])
    assert args.seeds == [2020] and args.datasets == ["ml-100k"] and args.out == ct.SMOKE_OUT
    assert settings == {"split_seed": 2020, "epochs": 2}
    assert chain == {**ct.SMOKE_CHAIN, "llm": "template", "finetune_encoder": "minilm"}
    assert llm == {"llm": "template"}
    assert args.rows == list(ct.ROWS)

    args, settings, _, chain = ct.parse_arguments(
        ["--smoke", "--datasets=amazon-office", "--epochs=3", "--rows=uniform,rlmrec", "--learning_rate=0.01"]
    )
    assert args.datasets == ["amazon-office"] and settings["epochs"] == 3 and settings["learning_rate"] == 0.01
    assert args.rows == ["uniform", "rlmrec"]
    args, settings, _, chain = ct.parse_arguments(["--finetune_encode_pairs=1000", "--hnlm_mix_weight=0.2"])
    assert args.seeds == [2020, 2021, 2022] and args.datasets == ["ml-100k", "amazon-office"]
    assert settings["epochs"] == 60 and args.out == ct.OUT
    assert chain["finetune_encode_pairs"] == 1000 and chain["hnlm_mix_weight"] == 0.2
    assert "hnlm_mix_weight" not in settings
    with pytest.raises(SystemExit):
        ct.parse_arguments(["--rows=uniform,bogus"])


def test_the_setting_states_the_semantic_budget():
    assert "encode the query of every training pair" in ct.budget_text({})
    assert "500 training pairs (the others fall back to neighbours)" in ct.budget_text({"finetune_encode_pairs": 500})
