"""Errors users see: each names what went wrong and where, never a bare traceback."""


class AlignlabError(Exception):
    """Base class for errors reported to the user with exit code 2."""


class ConfigError(AlignlabError, ValueError):
    """A config file or override is wrong: unknown key, bad type, missing file."""


class DataError(AlignlabError, ValueError):
    """An input data file is malformed; the message names file, line and field."""


class TrainingError(AlignlabError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is intact."""
