"""Errors a user can cause. Each carries the file/field/line and what to do about it.

The CLI prints ``str(error)`` on one line and exits with status 2; anything else that
escapes is a bug in nlpforge.
"""

from __future__ import annotations


class NlpforgeError(Exception):
    """Base class for every error caused by user input (files, flags, checkpoints, requests)."""


class CheckpointError(NlpforgeError):
    """A model directory or hub name that cannot be read as a supported checkpoint."""


class ConversionError(NlpforgeError):
    """A state dict whose keys or shapes do not match the expected key map."""


class ConfigError(NlpforgeError):
    """A configuration value that is missing, of the wrong type or out of range."""


class InputDataError(NlpforgeError):
    """An input data file that is missing, empty, mis-encoded or malformed."""


class BindError(NlpforgeError):
    """A server address that cannot be listened on: the port is in use, the host is not this machine's."""
