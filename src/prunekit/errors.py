"""User-facing errors: one paragraph naming the bad value and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable


class PrunekitError(Exception):
    """An error caused by the user's input (recipe, model, corpus, file), shown without a traceback."""


class ConfigError(PrunekitError, ValueError):
    """A recipe or argument value is invalid."""


class ModelLoadError(PrunekitError):
    """A model could not be found or read."""


def unknown_name(kind: str, value: object, choices: Iterable[str], where: str | None = None) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid ones."""
    location = f" (at '{where}')" if where else ""
    valid = ", ".join(sorted(choices)) or "(none registered)"
    hint = ""
    close = _closest(str(value), choices)
    if close:
        hint = f" Did you mean '{close}'?"
    return ConfigError(f"Unknown {kind} '{value}'{location}. Valid choices: {valid}.{hint}")


def _closest(value: str, choices: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
