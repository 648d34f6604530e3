"""The one exception type that reaches the user as a one-line message."""

from __future__ import annotations

from collections.abc import Iterable


class GanrunError(Exception):
    """Bad input or an unusable environment: printed as one line, exit code 2, no traceback.

    Raise it with a message that says what is wrong and how to fix it.
    """

    exit_code = 2
    label = "error"  # what the CLI prints before the message


def require(ok: bool, message: str) -> None:
    """Raise a GanrunError with ``message`` unless ``ok``: the shape of every config check."""
    if not ok:
        raise GanrunError(message)


def require_one_of(value: object, choices: Iterable[str], key: str) -> None:
    """Refuse a ``key=value`` setting that is not one of ``choices``, listing them."""
    choices = list(choices)
    require(value in choices, f"{key}={value} is not one of: {', '.join(choices)}")
