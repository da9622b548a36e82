"""limner's exceptions, in one small tree.

    LimnerError             base of everything limner raises on purpose
    ├── ConfigError         an unknown key, a bad value, a preset that does not exist
    ├── DataError           a dataset that cannot be read: missing or corrupt image,
    │                       malformed metadata line, a path that leaves the dataset
    ├── ModelLoadError      a model folder that is missing or incomplete
    ├── CheckpointError     a checkpoint that fails its checksums, or cannot be written
    └── DependencyError     an optional package or system resource is not installed

The CLI turns any of these into a one-line message and exit code 2.
"""


class LimnerError(Exception):
    """Base class for errors that limner reports to users."""


class ConfigError(LimnerError, ValueError):
    """A configuration value or key is invalid."""


class DataError(LimnerError):
    """A dataset or one of its files cannot be used."""


class ModelLoadError(LimnerError):
    """A saved model folder cannot be loaded."""


class CheckpointError(LimnerError):
    """A training checkpoint is corrupt, truncated or cannot be written."""


class DependencyError(LimnerError):
    """An optional dependency or system resource is missing."""
