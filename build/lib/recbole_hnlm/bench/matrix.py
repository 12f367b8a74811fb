"""A benchmark matrix: models x samplers x datasets x seeds, each cell one run with shared settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.tuning.space import read_settings_yaml

# RecBole's default seed, so that a matrix's first seed reproduces a plain `run_recbole_hnlm.py` run.
FIRST_SEED = 2020
# Config keys that the matrix sets per cell, and the option that sets them.
AXIS_OPTIONS = {"model": "--models", "dataset": "--datasets", "neg_sampler": "--samplers", "seed": "--seeds"}
_YAML_KEYS = (
    "name",
    "models",
    "samplers",
    "datasets",
    "seeds",
    "n_seeds",
    "settings",
    "config_files",
    "subgroups",
    "reuse",
)


@dataclass(frozen=True)
class BenchCell:
    """One run of the matrix."""

    model: str
    sampler: str
    dataset: str
    seed: int

    @property
    def label(self) -> str:
        """How progress and errors name the cell."""
        return f"{self.model} + {self.sampler} on {self.dataset}, seed {self.seed}"


def _names(value, key: str, source: str) -> list[str]:
    """A list of names from a YAML list or a comma-separated string, duplicates dropped."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{source}: {key} must be a list of names, e.g. {key}: [a, b]; got {value!r}.")
    names = list(dict.fromkeys(item.strip() for item in value if item.strip()))
    if not names:
        raise ConfigurationError(f"{source}: no {key} given. Fix: e.g. --{key}=a,b.")
    return names


def _seeds(seeds, n_seeds, source: str) -> list[int]:
    """The matrix's seeds: ``seeds`` lists them ("2021", "1,5,9" or [1, 5, 9]); ``n_seeds`` counts them from
    FIRST_SEED (2020, 2021, ...). One or the other, so that a number never means both."""
    if seeds is not None and n_seeds is not None:
        raise ConfigurationError(f"{source}: seeds and n_seeds are both given. Fix: keep one of them.")
    if seeds is None:
        count = 1 if n_seeds is None else n_seeds
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"{source}: n_seeds={count!r} must be a count >= 1. Fix: e.g. --n_seeds=3.")
        return [FIRST_SEED + index for index in range(count)]
    if isinstance(seeds, str):
        parts = [part.strip() for part in seeds.split(",") if part.strip()]
        if parts and all(part.lstrip("-").isdigit() for part in parts):
            return list(dict.fromkeys(int(part) for part in parts))
    elif isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return list(dict.fromkeys(seeds))
    raise ConfigurationError(
        f"{source}: seeds={seeds!r} must list seeds, e.g. --seeds=2020,2021 (seeds: [2020, 2021] in a YAML). "
        "Fix: list them, or count them with --n_seeds=3 (n_seeds: 3)."
    )


def _check_no_axis_keys(keys, source: str) -> None:
    for key in keys:
        if key in AXIS_OPTIONS:
            raise ConfigurationError(
                f"{source} sets '{key}', which the matrix sets per run. Fix: use {AXIS_OPTIONS[key]} instead."
            )


@dataclass
class MatrixSpec:
    """What to run: every (model, sampler, dataset, seed), with ``settings`` then ``cmd_args`` on top of each.

    ``settings`` are typed config values (a matrix YAML's ``settings:``); ``cmd_args`` are ``--key=value``
    strings from the command line, which win, as they do for a single run. ``subgroups`` adds the sparse-user and
    long-tail test metrics of ``recbole_hnlm.bench.subgroups`` to every run's row. ``reuse`` names other results
    folders whose finished runs count as this matrix's where the config hash and seed match (copied, not rerun).
    """

    models: list[str]
    samplers: list[str]
    datasets: list[str]
    seeds: list[int]
    name: str = "matrix"
    settings: dict = field(default_factory=dict)
    cmd_args: list[str] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    subgroups: bool = False
    reuse: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_no_axis_keys(self.settings, "The matrix's settings")
        _check_no_axis_keys((arg[2:].partition("=")[0] for arg in self.cmd_args), "A command-line override")
        if not isinstance(self.subgroups, bool):
            raise ConfigurationError(f"subgroups must be true or false, e.g. subgroups: true; got {self.subgroups!r}.")
        if not self.name or Path(self.name).name != self.name:
            raise ConfigurationError(f"--name={self.name!r} must be a plain folder name, e.g. --name=ml100k-small.")
        for folder in self.reuse:
            if not (Path(folder) / "runs.csv").is_file():
                raise ConfigurationError(
                    f"--reuse: {folder} holds no runs.csv. Fix: name a results folder of an earlier matrix, e.g. "
                    "--reuse=results/dens-reproduction."
                )

    @classmethod
    def from_sources(cls, yaml_file: str | None = None, **given) -> MatrixSpec:
        """A spec from an optional matrix YAML file, with the non-None ``given`` values on top."""
        values: dict = {}
        if yaml_file:
            values = _read_matrix_yaml(yaml_file)
            values.setdefault("name", Path(yaml_file).stem)
        given = {key: value for key, value in given.items() if value is not None}
        if "seeds" in given or "n_seeds" in given:  # the command line's choice of seeds replaces the YAML's
            values.pop("seeds", None)
            values.pop("n_seeds", None)
        values.update(given)
        source = yaml_file or "the command line"
        config_files = values.get("config_files") or []
        config_files = config_files.split() if isinstance(config_files, str) else config_files
        missing = [key for key in ("models", "samplers", "datasets") if key not in values]
        if missing:
            raise ConfigurationError(
                f"{source}: no {', '.join(missing)} given. Fix: e.g. --models=BPR,LightGCN --samplers=uniform,dns "
                "--datasets=ml-100k, or a --config matrix YAML listing them."
            )
        return cls(
            models=_names(values["models"], "models", source),
            samplers=_names(values["samplers"], "samplers", source),
            datasets=_names(values["datasets"], "datasets", source),
            seeds=_seeds(values.get("seeds"), values.get("n_seeds"), source),
            name=str(values.get("name", "matrix")),
            settings=dict(values.get("settings") or {}),
            cmd_args=list(values.get("cmd_args") or []),
            config_files=[str(Path(file).resolve()) for file in config_files],
            subgroups=values.get("subgroups", False),
            reuse=_folders(values.get("reuse") or []),
        )

    def cells(self) -> list[BenchCell]:
        """Every run, dataset-major and then seed by seed, so that a stopped matrix holds whole comparisons."""
        return [
            BenchCell(model, sampler, dataset, seed)
            for dataset, seed, model, sampler in itertools.product(
                self.datasets, self.seeds, self.models, self.samplers
            )
        ]

    def run_arguments(self, cell: BenchCell, defaults: dict) -> dict:
        """Keyword arguments of ``quick_start.run`` for ``cell``; ``defaults`` sit under the matrix's settings."""
        return {
            "model": cell.model,
            "dataset": cell.dataset,
            "config_file_list": self.config_files or None,
            "config_dict": {**defaults, **self.settings, "neg_sampler": cell.sampler, "seed": cell.seed},
            "cmd_args": self.cmd_args,
        }

    def configs(self, defaults: dict) -> dict[BenchCell, HNLMConfig]:
        """Every cell's config, built before any run so that a bad name or setting stops the whole matrix."""
        configs = {}
        for cell in self.cells():
            arguments = self.run_arguments(cell, defaults)
            configs[cell] = HNLMConfig(
                arguments["model"],
                arguments["dataset"],
                arguments["config_file_list"],
                arguments["config_dict"],
                arguments["cmd_args"],
            )
        return configs

    def to_dict(self) -> dict:
        """The spec as written to the results folder's manifest."""
        return {
            "name": self.name,
            "models": self.models,
            "samplers": self.samplers,
            "datasets": self.datasets,
            "seeds": self.seeds,
            "settings": self.settings,
            "cmd_args": self.cmd_args,
            "config_files": self.config_files,
            "subgroups": self.subgroups,
            "reuse": self.reuse,
        }


def _folders(value) -> list[str]:
    """Folders given as a list or a comma-separated string."""
    folders = value.split(",") if isinstance(value, str) else value
    return [str(folder).strip() for folder in folders if str(folder).strip()]


def _read_matrix_yaml(path: str) -> dict:
    values = read_settings_yaml(path, "Matrix file") or {}
    if not isinstance(values, dict):
        raise ConfigurationError(f"Matrix file '{path}' must be a mapping with keys {', '.join(_YAML_KEYS)}.")
    unknown = sorted(set(values) - set(_YAML_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Matrix file '{path}' has unknown key(s) {', '.join(unknown)}. Valid keys: {', '.join(_YAML_KEYS)}; "
            "run settings such as epochs go under settings:."
        )
    if not isinstance(values.get("settings") or {}, dict):
        raise ConfigurationError(f"Matrix file '{path}': settings must be a mapping, e.g. settings: {{epochs: 5}}.")
    return values
