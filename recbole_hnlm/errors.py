"""Exceptions a user can cause. Each message names the input at fault and how to fix it."""


class HNLMError(Exception):
    """Base class of every error recbole-hnlm raises for bad input or configuration."""


class ConfigurationError(HNLMError):
    """A setting is unknown, missing or contradicts another one."""


class UnknownNameError(ConfigurationError):
    """A model, sampler or dataset name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str], hint: str = "") -> None:
        message = f"Unknown {kind} '{name}'. Valid {kind}s: {', '.join(sorted(valid))}."
        if hint:
            message += f" {hint}"
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)


class UnknownSettingError(ConfigurationError):
    """A ``--key=value`` (or config key) that no part of the run reads, e.g. a typo."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class UnsupportedModelError(ConfigurationError):
    """A model that cannot be trained with sampled negatives."""


class DataFormatError(HNLMError):
    """A data file is malformed; the message names the file and, where it can, the line."""


class DatasetNotFoundError(HNLMError):
    """A dataset folder or file that does not exist."""


class ModelNotFoundError(ConfigurationError):
    """A language or embedding model that is not installed or not at the given path."""


class BackendUnavailableError(HNLMError):
    """An LLM endpoint that cannot be reached or refuses the request."""


class CacheMismatchError(HNLMError):
    """A cache folder made from other inputs or settings than the ones asked for."""


class ClusterUnreachableError(HNLMError):
    """A Ray cluster address that does not answer."""
