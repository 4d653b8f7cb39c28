"""The CLI's argument parser: a nested jsonargparse type error leads with its full dotted key."""

from __future__ import annotations

import os
import re
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

KEY = re.compile(r'Parser key "([^"]+)":')
CLASS = re.compile(
    r"Problem with given class_path '[^']+':"
    r"|expects a function or a callable class:"
)
LEAF = re.compile(r"Not of type (\w+): (.+?)(?:\. Got value: .*)?$")
CHOICE = re.compile(r"Expected a typing\.Literal\[(.+)\]\. Got value: (.*)$")
GIVEN = re.compile(r"Given value: (.*)$")


def summarise(message: str) -> str | None:
    """``<dotted key>: <problem> (<type>)`` for the first type error in ``message``, if any.

    jsonargparse reports a bad value inside a ``class_path`` option as nested blocks
    (``Parser key "model.method"`` ... ``Parser key "rounds"``); the summary joins them into the
    key a user types (``model.method.init_args.rounds``).
    """
    lines = message.splitlines()
    stack: list[tuple[int, str | None]] = []  # (indent, key), None for a class boundary
    for number, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" -"))
        leaf = _leaf_problem(line)
        if leaf:
            kind, problem = leaf
            if problem.startswith("does not conform"):  # jsonargparse left the value out
                given = next(filter(None, map(GIVEN.search, lines[number + 1 :])), None)
                problem = f"{given.group(1)} {problem}" if given else problem
            dotted = _dotted([key for i, key in stack if i < indent])
            return f"{dotted}: {problem} ({kind})" if dotted else None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if CLASS.search(line):  # its keys may start at its own indent, below its "- "
            stack.append((indent - 1, None))
        key = KEY.search(line)
        if key:
            stack.append((indent, key.group(1)))
    return None


def _leaf_problem(line: str) -> tuple[str, str] | None:
    """``(type, problem)`` when ``line`` is the innermost error of a value, else None."""
    leaf, choice = LEAF.search(line), CHOICE.search(line)
    if choice:
        return "Literal", f"{choice.group(2)} is not one of {choice.group(1)}"
    return (leaf.group(1), leaf.group(2)) if leaf else None


def _dotted(keys: list[str | None]) -> str:
    """The keys joined with ``init_args`` wherever a class boundary separates two of them."""
    parts: list[str] = []
    for key in keys:
        if key is None:
            if parts and parts[-1] != "init_args":
                parts.append("init_args")
        else:
            parts.append(key)
    return ".".join(parts)


class RobustViTParser(LightningArgumentParser):
    """LightningCLI's parser, whose nested type errors start with one line naming the key."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Print the summary line above jsonargparse's message, then exit as it does (code 2)."""
        summary = summarise(message)
        if summary is not None and not message.startswith(summary):
            message = f"{summary}\n{message}"
        super().error(message, ex)

    def parse_path(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        """Parse a config file; one that is not valid YAML fails naming its path and line."""
        import yaml

        if os.path.isfile(path):
            with open(path) as text:
                try:
                    yaml.safe_load(text)
                except yaml.YAMLError as err:
                    self.error(
                        f"config file {os.fspath(path)!r} is not valid YAML ({err}). Fix it at "
                        "the line shown."
                    )
        return super().parse_path(path, *args, **kwargs)
