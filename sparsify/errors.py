"""The one exception type for bad user input: the CLI prints its message as one line, exit 2."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what is allowed."""
