"""Errors the trainer reports to users without a traceback."""


class TrainerError(Exception):
    """A problem with the user's input (data, paths, configuration) that stops a command."""
