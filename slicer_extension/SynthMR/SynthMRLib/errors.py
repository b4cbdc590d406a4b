"""The one exception type of SynthMRLib: bad input from the user, as one message naming the input and the problem.

It mirrors :class:`synthmr.errors.InputError` without needing synthmr, which a fresh Slicer does not have yet.
The module shows the message as it is; anything else raised is a bug and keeps its traceback.
"""


class SynthMRError(ValueError):
    """Bad input from the user (a bundle, a scene node, an edit): the message names it and says what is wrong."""
