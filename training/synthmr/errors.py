"""The one exception type for bad user input.

Everything the user can get wrong (a path, a shape, a name, a value) raises :class:`InputError` with a message
that names the input and the problem. The CLI prints that message as one line and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: the message names the input and what is wrong with it."""
