"""Errors a user can act on. Entry points print them as one line and exit non-zero."""


class PipelineError(Exception):
    """Base class: anything that should reach the user as a one-line message."""


class ConfigError(PipelineError):
    """An invalid configuration value (names the key and what was wrong)."""


class InputError(PipelineError):
    """A missing or unreadable input (image, dataset, model folder)."""


class Interrupted(PipelineError):
    """The run was stopped by a signal before it finished (its committed output is valid)."""
