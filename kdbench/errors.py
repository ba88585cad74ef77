"""Errors a user can cause.

A :class:`UserError` is one clear message with the fix. The command line prints it
on stderr, without a traceback, and exits with code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """The user's input is wrong: a grid, a name, a parameter, a file."""


class UnknownComponentError(UserError, KeyError):
    """A component name that no loaded plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(UserError):
    """Two plugins registered the same name for the same kind."""


class IncompatibleError(UserError):
    """A component cannot work with what it was given (e.g. a modality)."""
