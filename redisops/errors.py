"""Errors that end a redisops command with a specific exit code."""

from __future__ import annotations


class UsageError(Exception):
    """Missing or malformed input (variable, flag, file): exit code 2.

    The message names the variable or flag and says what is expected; it never contains a
    secret value.
    """

    exit_code = 2


class OperationError(Exception):
    """The operation itself failed (backup could not be verified, restore refused): exit code 1."""

    exit_code = 1
