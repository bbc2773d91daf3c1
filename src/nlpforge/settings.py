"""Declaring a setting of a config dataclass: its default and its help text, in one place.

    epochs: float = setting(3.0, "Epochs over the training file (fractions allowed).")

The CLI (cli_options.py) turns every such field into a flag with that default and help; a YAML
config holds the same names. ``parse`` converts the flag's text (a column given by name or index,
``START:STOP``) into the field's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

HELP, PARSE, CHOICES = "help", "parse", "choices"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, parse: Callable[[str], Any] | None = None,
            choices: tuple[str, ...] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its help text (and, for the CLI, how to parse it and its choices)."""
    metadata = {HELP: help, PARSE: parse, CHOICES: choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
