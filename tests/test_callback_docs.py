"""Every public callback documents every ``__init__`` argument under ``Args:`` in its class
docstring, the section jsonargparse reads for ``sparsify fit --help``."""

import inspect
import re
import subprocess
import sys

import pytest
from jsonargparse import ArgumentParser

import sparsify.callbacks as callbacks

ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:")


def documented_args(docstring: str) -> set[str]:
    """The names in the ``Args:`` section of a Google-style docstring: the lines one indent
    below the heading that start with ``name:`` or ``name (type):``."""
    lines = inspect.cleandoc(docstring).splitlines()
    names: set[str] = set()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return names
    heading_indent = len(lines[start]) - len(lines[start].lstrip())
    arg_indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= heading_indent:
            break
        if arg_indent is None:
            arg_indent = indent
        if indent == arg_indent and (match := ARG_LINE.match(line)):
            names.add(match.group(2).lstrip("*"))
    return names


def init_args(cls: type) -> set[str]:
    """The arguments of ``cls(...)``; ``**kwargs`` passed on to ``super().__init__`` are the
    next base class's arguments, as jsonargparse follows them. A class that inherits its
    ``__init__`` from Lightning or ``object`` takes none."""
    owner = next(c for c in cls.__mro__ if "__init__" in vars(c))
    if not owner.__module__.startswith("sparsify"):
        return set()
    names = set()
    for p in inspect.signature(owner.__init__).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            names |= init_args(owner.__mro__[1])
        elif p.kind is not p.VAR_POSITIONAL and p.name != "self":
            names.add(p.name)
    return names


@pytest.mark.parametrize("name", callbacks.__all__)
def test_every_init_argument_is_under_args(name):
    cls = getattr(callbacks, name)
    docstring = cls.__doc__ or ""
    missing = init_args(cls) - documented_args(docstring)
    assert not missing, f"{name}: {sorted(missing)} not under Args: in the class docstring"
    unknown = documented_args(docstring) - init_args(cls)
    assert not unknown, f"{name}: Args: names {sorted(unknown)}, which __init__ does not take"


@pytest.mark.parametrize("name", callbacks.__all__)
def test_help_shows_every_argument(name):
    """What ``sparsify fit --help`` prints: jsonargparse's help text of every argument, read
    from the docstring of the class that defines it (a base class for ``**kwargs``)."""
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(callbacks, name), "callback")
    helps = {a.dest: a.help or "" for a in parser._actions if a.dest.startswith("callback.")}
    assert set(helps) == {f"callback.{arg}" for arg in init_args(getattr(callbacks, name))}
    undocumented = sorted(dest for dest, text in helps.items() if not text.strip())
    assert not undocumented, f"{name}: {undocumented} have no help text"


def test_the_command_line_help_of_a_callback_shows_its_args(tmp_path):
    """``sparsify fit --trainer.callbacks.help PruneAtEnd`` prints every argument's Args text."""
    result = subprocess.run(
        [sys.executable, "-m", "sparsify", "fit", "--trainer.callbacks.help", "PruneAtEnd"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    for arg in init_args(callbacks.PruneAtEnd):
        assert f"--trainer.callbacks.{arg} " in text, arg
    assert "every layer keeps at least ``layer_floor · (1 − sparsity)`` of its weights" in text
