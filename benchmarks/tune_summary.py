"""Summarise Ray Tune searches (their ``best.json``) as tables, and write the chosen settings into ``properties/``.

Usage: python benchmarks/tune_summary.py results/tune/<name>/best.json [...] --out results/tune-claims
       [--write_properties]

For each search: a copy of its ``best.json`` without machine paths (``<out>/searches/<name>.json``); then
``<out>/searches.md`` is rebuilt from every copy there, a section per search: the command that ran it (less a
``--data_path`` to the checkout's own dataset folder), one row per trial (the searched settings, how far it ran, its
best validation score) and the chosen settings. Only validation chooses; the test figures of the best trial are shown
as recorded, never compared.

``--write_properties`` writes the chosen settings to ``recbole_hnlm/properties/dataset/<dataset>/<file>.yaml`` with
the command in its header: ``<Model>.yaml`` for a model's own space (RLMRec, AlphaRec; every run of that model on
that dataset reads it), ``<sampler>.yaml`` for a sampler's (hnlm; read by every run of it there), and
``text_filter.yaml`` for the text filter's, which no run reads unless given it (benchmarks/claims_table.py's filter
row does): a filter chosen on top of one sampler must not move that sampler's other runs. When the best trial
switches the method off (``text_filter: none``, ``hnlm_mix_weight: 0``), the file holds the best trial with it on
(the furthest-run, then the best on validation), and says so: that the method is best off is the search's finding.
``--not_applied "<why>"`` records a search whose choice is not used (e.g. the defaults score higher on validation
than every trial) and writes no file.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from recbole_hnlm.io import write_json_atomic, write_text_atomic
from recbole_hnlm.paths import properties_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FILTER_KEY = "text_filter"


def relative(path: str) -> str:
    """A path inside a checkout of this project, from its root (whichever checkout ran the search)."""
    parts = Path(path).parts
    for anchor in ("recbole_hnlm", "results", "benchmarks"):
        if anchor in parts:
            return str(Path(*parts[parts.index(anchor) :]))
    return path


def _own_dataset_folder(argument: str) -> bool:
    """``--data_path=<a checkout>/dataset``: the default of a run from that checkout."""
    key, _, value = argument.partition("=")
    return key == "--data_path" and Path(value).name == "dataset"


def search_command(search: dict) -> str:
    """The command line that ran ``search``."""
    space = relative(search["space_file"])
    shipped = Path(space).parent == Path("recbole_hnlm/properties/tune")
    options = search["search"]
    arguments = [
        f"--model={search['model']}",
        f"--dataset={search['dataset']}",
        *[arg for arg in search["cmd_args"] if not _own_dataset_folder(arg)],
        f"--tune={Path(space).stem if shipped else space}",
        f"--num_samples={options['num_samples']}",
        f"--grace_period={options['grace_period']}",
        *([f"--num_cpus={options['num_cpus']}"] if options.get("num_cpus") else []),
        f"--name={options['name']}",
    ]
    return shlex.join(["python", "run_recbole_hnlm.py", *arguments])


def settings_file(search: dict) -> str:
    """Which properties file the search's choice goes to (see the module docstring)."""
    if FILTER_KEY in search["space"]:
        return FILTER_KEY
    if search["model"] in {"RLMRec", "AlphaRec"}:
        return search["model"]
    return search["neg_sampler"]


# Per searched file, the setting that switches the method off and its "off" value: a search may find that the method
# is best switched off (that is then its finding), but the file (and the claims table's row) keeps the method on.
SWITCHES = {FILTER_KEY: (FILTER_KEY, "none"), "hnlm": ("hnlm_mix_weight", 0.0)}


def chosen(search: dict) -> tuple[dict, str]:
    """The settings to write and a note on how they were chosen: the best trial on validation or, where that trial
    switches the method off (``SWITCHES``), the best trial with it on: of those, the one that ran furthest (ASHA stops
    the weaker early), then the best validation score."""
    best = dict(search["best_config"])
    switch = SWITCHES.get(settings_file(search))
    if switch is None or best.get(switch[0]) != switch[1]:
        return best, "the best trial on validation"
    key, off = switch
    on = [trial for trial in search["trials"] if trial["config"].get(key) != off and trial.get("valid_score")]
    if not on:
        return best, f"the best trial on validation, which has {key} {off}; no trial with the method on ran"
    top = max(on, key=lambda trial: (trial.get("validations") or 0, trial["valid_score"]))
    return dict(top["config"]), (
        f"the best trial with {key} other than {off} ({top['status']} after {top.get('validations')} validations, "
        f"valid {top['valid_score']:.4f}); the best trial overall has {key} {off} (valid "
        f"{search['best_valid_score']:.4f})"
    )


def without_paths(search: dict) -> dict:
    """``search`` without checkpoint and Ray folders (machine paths), its space file relative to the project."""
    trials = [{key: value for key, value in trial.items() if key != "checkpoint"} for trial in search["trials"]]
    dropped = ("checkpoint", "ray_results", "best_file")
    copy = {key: value for key, value in search.items() if key not in dropped}
    return {**copy, "space_file": relative(search["space_file"]), "trials": trials}


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def section(search: dict) -> str:
    """The markdown section of one search."""
    names = list(search["space"])
    options = search["search"]
    settings, how = chosen(search)
    lines = [
        f"## {search['search']['name']}",
        "",
        f"{search['model']} + {search['neg_sampler']} on {search['dataset']}: {len(search['trials'])} trials of at "
        f"most {options['max_validations']} validations, ASHA (grace period {options['grace_period']}, reduction "
        f"factor {options['reduction_factor']}) on validation {search['metric']}.",
        "",
        "```",
        search_command(search),
        "```",
        "",
        "| " + " | ".join([*names, "status", "validations", f"best valid {search['metric']}"]) + " |",
        "|" + "---|" * (len(names) + 3),
    ]
    ranked = sorted(search["trials"], key=lambda trial: -(trial.get("valid_score") or 0))
    for trial in ranked:
        mark = "**" if trial["config"] == settings else ""
        cells = [f"{mark}{_value(trial['config'].get(name))}{mark}" for name in names]
        score = trial.get("valid_score")
        cells += [trial["status"], str(trial.get("validations")), f"{score:.4f}" if score is not None else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    test = search.get("test_result") or {}
    choice = f"Chosen ({how}): `{json.dumps(settings)}`."
    if search.get("not_applied"):
        choice = f"Best trial ({how}): `{json.dumps(settings)}`; **not applied**: {search['not_applied']}."
    lines += [
        "",
        f"{choice} The best trial's test {search['metric']}: {test.get(search['metric'], float('nan')):.4f} "
        "(recorded, never compared).",
        "",
    ]
    return "\n".join(lines)


def properties_text(search: dict) -> str:
    """The properties file of the search's choice, its command in the header."""
    settings, how = chosen(search)
    header = [
        f"# {search['model']} + {search['neg_sampler']} on {search['dataset']}: settings chosen on validation "
        f"{search['metric']} by a Ray Tune search ({how}; results/tune-claims/searches.md):",
        f"# {search_command(search)}",
    ]
    if settings_file(search) == FILTER_KEY:
        header.append(
            "# Read only where given (--config_files), or by benchmarks/claims_table.py's filter row: chosen on top of "
            f"{search['neg_sampler']}."
        )
    return "\n".join(header + [f"{key}: {json.dumps(value)}" for key, value in settings.items()]) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the tables, the copies and (with --write_properties) the chosen settings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("searches", nargs="+", type=Path, help="best.json files of finished searches")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "tune-claims")
    parser.add_argument("--write_properties", action="store_true", help="write the chosen settings to properties/")
    parser.add_argument(
        "--not_applied",
        default=None,
        help="why the searches' choice is not used (e.g. the defaults score higher on validation); nothing is written",
    )
    args = parser.parse_args(argv)
    for file in args.searches:
        search = json.loads(file.read_text())
        name = search["search"]["name"]
        if args.not_applied:
            search["not_applied"] = args.not_applied
        write_json_atomic(args.out / "searches" / f"{name}.json", without_paths(search))
        if args.write_properties and not args.not_applied:
            target = properties_file("dataset", search["dataset"], f"{settings_file(search)}.yaml")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(target, properties_text(search))
            print(f"{name}: chosen settings -> {relative(str(target))}")
    # Every search copied so far, not only this call's: the page is rebuilt whole each time.
    sections = [section(json.loads(file.read_text())) for file in sorted((args.out / "searches").glob("*.json"))]
    write_text_atomic(args.out / "searches.md", "# The searches\n\n" + "\n".join(sections))
    print(f"written to {args.out / 'searches.md'}")


if __name__ == "__main__":
    main()
