"""Errors that a user can fix.  The command line prints them as one line and exits with 2."""
from __future__ import annotations


class BayesHaloError(Exception):
    """Base class: bad input, missing data, corrupt files, a diverging run."""


class ConfigError(BayesHaloError, ValueError):
    """An argument is out of range or names something unknown.

    Messages quote the settings they name in backticks (```lr` must be a positive number``); a
    command line shows each quoted setting as its flag (``--lr must be a positive number``).
    """


class DataUnavailableError(BayesHaloError, FileNotFoundError):
    """A data set could not be found, read or downloaded."""


class CheckpointError(BayesHaloError):
    """A checkpoint or saved run is missing, corrupt or from an incompatible run."""


class DivergenceError(BayesHaloError, FloatingPointError):
    """Training produced a non-finite loss or parameter."""


class MissingDependencyError(BayesHaloError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
