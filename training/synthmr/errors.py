"""The one exception type for bad user input.

Everything the user can get wrong (a path, a shape, a name, a value) raises :class:`InputError` with a message
that names the input and the problem. The CLI prints that message as one line and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: the message names the input and what is wrong with it."""


def config_bool(value: object, name: str) -> bool:
    """A yes/no setting of a bundle config as a bool: ``python -m monai.bundle run --overwrite false`` passes the
    string "false" (fire parses only "False"), which ``bool()`` would take for True. Accepts bools and the strings
    true/false/yes/no/1/0 in any case; anything else is an :class:`InputError` naming the setting."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise InputError(f"{name} must be true or false; got {value!r}")


# Top-level modules that only the optional extra "train" brings (pyproject.toml), each with the distribution that
# provides it: the phantom, training and evaluation need them; `pip install synthmr` alone brings what inference,
# the runner and `python -m monai.bundle run` need.
TRAIN_EXTRA_MODULES = {
    "nilearn": "nilearn",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "ignite": "pytorch-ignite",
    "tensorboard": "tensorboard",
    "tqdm": "tqdm",
}
TRAIN_EXTRA_INSTALL = 'pip install "synthmr[train]"'


def missing_extra(error: ModuleNotFoundError) -> InputError | None:
    """The :class:`InputError` to raise instead of ``error`` when the module it misses comes with an extra of
    synthmr (a train-only feature used without ``synthmr[train]``), or None for any other missing module."""
    module = (error.name or "").partition(".")[0]
    if module not in TRAIN_EXTRA_MODULES:
        return None
    return InputError(
        f"this needs {TRAIN_EXTRA_MODULES[module]}, one of the phantom, training and evaluation dependencies "
        f"that plain `pip install synthmr` leaves out: {TRAIN_EXTRA_INSTALL}"
    )
