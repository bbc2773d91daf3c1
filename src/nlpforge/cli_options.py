"""Command-line flags generated from the typed config dataclasses (``nlpforge.settings.setting``).

Each field becomes one ``--flag`` with the field's type, help text and default (shown as
``[default: ...]``); booleans become ``--flag/--no-flag``; fields with choices list them.
``register`` adds a command whose signature is built from such flags; a generated flag that was not
given on the command line reaches the command as None, so that a YAML ``--config`` may fill it
before the dataclass default applies.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

import typer

from nlpforge.settings import CHOICES, HELP, PARSE

_SCALARS = (bool, int, float, str)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _cli_type(annotation: Any) -> Any:
    """The type the flag takes on the command line: bool, int, float, or str (columns, ranges, paths)."""
    if typing.get_origin(annotation) is list:
        return list[str]  # a repeatable flag
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(args) == 1 and args[0] in _SCALARS:
        return args[0]
    return str


def options(config: type, skip: Iterable[str] = (), required_note: str = "") -> list[inspect.Parameter]:
    """One keyword parameter (a typer option, default None) per field of ``config``.

    A field without a default is marked ``[required]`` (``required_note`` says where else it may
    come from, e.g. "or in --config"); with an empty note, click itself requires it.
    """
    hints = typing.get_type_hints(config)
    parameters = []
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        kind = _cli_type(hints[field.name])
        help_text = field.metadata.get(HELP, "")
        if field.metadata.get(CHOICES):
            help_text += f" One of: {', '.join(field.metadata[CHOICES])}."
        names = [f"{flag_name(field.name)}/--no-{field.name.replace('_', '-')}"] if kind is bool \
            else [flag_name(field.name)]
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and required_note:
            option = typer.Option(*names, help=f"{help_text} [required {required_note}]", show_default=False)
            default = None
        elif required:
            option, default = typer.Option(*names, help=help_text), inspect.Parameter.empty
        else:  # a field with a default factory (an empty list) reaches the dataclass as not given
            default = None if field.default is dataclasses.MISSING else field.default
            option = typer.Option(*names, help=help_text, show_default=default is not None)
        annotation = Annotated[kind if default is inspect.Parameter.empty else kind | None, option]
        parameters.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
    return parameters


def given(config: type, flags: dict[str, Any]) -> dict[str, Any]:
    """The flags of ``config``'s fields that were given, parsed into the fields' values."""
    values = {}
    for field in dataclasses.fields(config):
        value = flags.get(field.name)
        if value is not None:
            parse = field.metadata.get(PARSE)
            values[field.name] = parse(value) if parse is not None else value
    return values


def register(app: typer.Typer, name: str, run: Callable[..., None], parameters: Sequence[inspect.Parameter],
             generated: Sequence[inspect.Parameter], help_text: str) -> None:
    """Add command ``name`` to ``app``: ``run(**flags)`` receives every parameter by name; those of
    ``generated`` (from ``options``) are None unless given on the command line."""
    generated_names = {parameter.name for parameter in generated}

    def command(context: typer.Context, **flags: Any) -> None:
        for flag in generated_names:
            source = context.get_parameter_source(flag)
            if source is not None and source.name == "DEFAULT":
                flags[flag] = None
        run(**flags)

    context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    signature = sorted([*parameters, *generated, context], key=_positional_first)
    command.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    command.__doc__ = help_text
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


def _positional_first(parameter: inspect.Parameter) -> int:
    return 0 if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else 1


def command_group(name: str, help: str) -> typer.Typer:
    """A ``nlpforge NAME ...`` group of commands, with the main app's plain help and error handling."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, pretty_exceptions_enable=False,
                       add_completion=False, rich_markup_mode=None)
