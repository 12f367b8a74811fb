"""Where the plugin's own files are: its defaults and prompts ship inside the package, so a wheel finds them."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROPERTIES_DIR = PACKAGE_DIR / "properties"
PROMPTS_DIR = PACKAGE_DIR / "llm" / "prompts"
# A checkout keeps its embedded datasets (ml-100k) in dataset/ beside the package.
_CHECKOUT_DATASETS = PACKAGE_DIR.parent / "dataset"


def default_data_path() -> Path:
    """The checkout's ``dataset/`` when the package runs from one, else ``./dataset`` as RecBole has it."""
    if (_CHECKOUT_DATASETS / "ml-100k").is_dir():
        return _CHECKOUT_DATASETS
    return Path("dataset").resolve()


def properties_file(*parts: str) -> Path:
    """A defaults file shipped with the package, e.g. ``properties_file("sampler", "dns.yaml")``."""
    return PROPERTIES_DIR.joinpath(*parts)
