"""The one exception type for bad user input (the CLI prints its message as one line, exit 2),
the one check of a value against its choices, and the one check that counts are >= 1."""

from typing import Literal, get_args, get_origin


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what is allowed."""


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ConfigError`` naming ``value`` and the allowed ones unless ``value`` is one of
    ``choices``: a ``typing.Literal[...]`` (the annotation jsonargparse validates the command
    line with) or a sequence. For library callers, who get no parser in between."""
    allowed = get_args(choices) if get_origin(choices) is Literal else tuple(choices)
    if value not in allowed:
        names = ", ".join(str(choice) for choice in allowed)
        raise ConfigError(f"{name}={value!r} is invalid: choose one of {names}")


def check_counts(**counts: int) -> None:
    """Raise a ``ConfigError`` naming the first of ``counts`` (sizes and numbers of things, by
    their argument names) that is below 1."""
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"{name}={value!r} is invalid: must be >= 1")
