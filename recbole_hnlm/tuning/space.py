"""Search spaces for Ray Tune, written as a small YAML file with one line per searched setting.

    learning_rate: {loguniform: [1.0e-4, 1.0e-2]}   # low, high (both > 0)
    ahns_alpha: {uniform: [0.1, 2.0]}                # low, high
    candidate_num: {choice: [8, 16, 32, 64]}         # any values
    embedding_size: {randint: [32, 129]}             # low inclusive, high exclusive, as Ray's tune.randint

Every name must be a setting that RecBole or the plugin defines for the model, dataset and sampler being
searched (checked against their final config before any trial starts), and every range must hold a value.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml
from recbole.config import Config

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model import MODEL_ZOO, model_defaults_files
from recbole_hnlm.paths import properties_file
from recbole_hnlm.samplers import get_sampler_class

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
# Settings that a search cannot vary: they pick what is searched, not how it trains.
FIXED_BY_THE_SEARCH = ("model", "dataset", "neg_sampler", "data_path", "benchmark_filename")


def read_settings_yaml(path: str | Path, what: str) -> object:
    """Parse a YAML file the way RecBole reads config files (so that 1e-3 is a float), or say what is wrong."""
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"{what} '{path}' does not exist. Fix: check the path.")
    try:
        # RecBole's loader: YAML 1.1 plus floats written without a dot, such as 1e-3.
        return yaml.load(file.read_text(encoding="utf-8"), Loader=Config._build_yaml_loader(None))
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{what} '{path}' is not valid YAML: {error}") from None


def shipped_spaces() -> dict[str, Path]:
    """The spaces the package ships, by name: one per sampler (``dns``), per model (``RLMRec``), and ``text_filter``."""
    return {file.stem: file for file in sorted(properties_file("tune").glob("*.yaml"))}


def resolve_space_file(path: str | Path) -> Path:
    """``path`` itself where it is a file or looks like one (a folder or a .yaml ending), else the shipped space of
    that name: a sampler's (``--tune=dns``) or a model's (``--tune=RLMRec``; any case), refused with the names when
    there is none."""
    text = str(path)
    if Path(text).is_file() or "/" in text or text.endswith((".yaml", ".yml")):
        return Path(text)
    shipped = {name.lower(): file for name, file in shipped_spaces().items()}
    if text.lower() in shipped:
        return shipped[text.lower()]
    raise ConfigurationError(
        f"--tune={text}: no such file and no space of that name ships with recbole-hnlm. Shipped: "
        f"{', '.join(shipped_spaces())} (a sampler's, a model's or the text filter's). Fix: one of those names, or "
        "the path of a space YAML."
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SearchParameter:
    """One searched setting: ``choice`` over ``values``, or a range ``values == (low, high)``."""

    name: str
    distribution: str
    values: tuple

    @classmethod
    def parse(cls, name: str, spec, source: str) -> SearchParameter:
        """Read ``{distribution: arguments}``, refusing unknown distributions and empty ranges."""
        example = "e.g. {choice: [8, 16]}, {uniform: [0.1, 2.0]}, {loguniform: [1.0e-4, 1.0e-2]}, {randint: [1, 5]}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigurationError(f"{source}: '{name}' must be one distribution, {example}; got {spec!r}.")
        ((distribution, arguments),) = spec.items()
        if distribution not in DISTRIBUTIONS:
            raise ConfigurationError(
                f"{source}: '{name}' uses unknown distribution '{distribution}'. Valid: {', '.join(DISTRIBUTIONS)}."
            )
        if distribution == "choice":
            if not isinstance(arguments, list) or not arguments:
                raise ConfigurationError(
                    f"{source}: '{name}' has an empty choice list, so no value can be tried. Fix: list at least "
                    "one value, e.g. {choice: [8, 16]}."
                )
            return cls(name, distribution, tuple(arguments))
        if not isinstance(arguments, list) or len(arguments) != 2 or not all(map(_is_number, arguments)):
            raise ConfigurationError(f"{source}: '{name}' needs {{{distribution}: [low, high]}}; got {arguments!r}.")
        low, high = arguments
        if distribution == "randint" and not all(isinstance(bound, int) for bound in arguments):
            raise ConfigurationError(f"{source}: '{name}' randint bounds must be integers; got {arguments!r}.")
        if low >= high:
            bounds = "[low, high): high is exclusive, as in Ray's tune.randint" if distribution == "randint" else ""
            raise ConfigurationError(
                f"{source}: '{name}' has an empty range {{{distribution}: [{low}, {high}]}}: low must be below "
                f"high. {bounds}".strip()
            )
        if distribution == "loguniform" and low <= 0:
            raise ConfigurationError(f"{source}: '{name}' loguniform needs low > 0; got {low}.")
        return cls(name, distribution, (low, high))

    def to_ray(self):
        """The Ray Tune domain for this parameter."""
        from ray import tune

        if self.distribution == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.distribution)(*self.values)


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings of one space file."""

    parameters: tuple[SearchParameter, ...]
    source: str

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Read and check a space file (names are checked later, against a config: ``check_names``).

        A bare name is a space the package ships (``resolve_space_file``).
        """
        path = resolve_space_file(path)
        values = read_settings_yaml(path, "Search space file")
        if not isinstance(values, dict) or not values:
            raise ConfigurationError(
                f"Search space file '{path}' must map setting names to distributions, e.g. "
                "learning_rate: {loguniform: [1.0e-4, 1.0e-2]}."
            )
        fixed = [name for name in values if name in FIXED_BY_THE_SEARCH]
        if fixed:
            raise ConfigurationError(
                f"Search space file '{path}' varies {', '.join(fixed)}, which a search holds fixed. Fix: run one "
                "search per model, dataset and sampler (compare samplers with python -m recbole_hnlm.bench)."
            )
        return cls(tuple(SearchParameter.parse(str(name), spec, str(path)) for name, spec in values.items()), str(path))

    @property
    def names(self) -> list[str]:
        """The searched settings' names."""
        return [parameter.name for parameter in self.parameters]

    def check_names(self, config) -> None:
        """Refuse names that are not settings of ``config`` (RecBole's, the plugin's, the model's or sampler's)."""
        known = set(config.final_config_dict)
        unknown = [name for name in self.names if name not in known]
        if not unknown:
            return
        sampler = config["neg_sampler"]
        sampler_knobs = sorted(
            {
                key
                for file in get_sampler_class(sampler).defaults_files()
                for key in read_settings_yaml(file, "Sampler defaults") or {}
            }
        )
        model = MODEL_ZOO.get(config["model"])
        model_knobs = sorted(
            {key for file in model_defaults_files(model) for key in read_settings_yaml(file, "Model defaults") or {}}
            if model is not None
            else set()
        )
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=3)
            hints.append(f"'{name}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ConfigurationError(
            f"{self.source}: unknown parameter(s) {', '.join(hints)}: not a setting of RecBole or recbole-hnlm for "
            f"{config['model']} with neg_sampler={sampler} on {config['dataset']}, so searching it would change "
            f"nothing. The knobs of {sampler}: {', '.join(sampler_knobs) or 'none'}"
            + (f"; of {config['model']}: {', '.join(model_knobs)}" if model_knobs else "")
            + f". Fix: correct the name, use the space file of this sampler (properties/tune/{sampler}.yaml)"
            + (f" or model (properties/tune/{config['model']}.yaml)" if model_knobs else "")
            + ", or, for a setting your own code reads, give it a default in a YAML passed with --config_files."
        )

    def to_ray(self) -> dict:
        """The ``param_space`` for Ray Tune's Tuner."""
        return {parameter.name: parameter.to_ray() for parameter in self.parameters}

    def to_dict(self) -> dict:
        """The space as written to the search's manifest."""
        return {parameter.name: {parameter.distribution: list(parameter.values)} for parameter in self.parameters}
