"""SynthMR: lesion-controllable multiparametric MRI synthesis (MONAI Bundles, phantom, Slicer module)."""

from importlib.metadata import PackageNotFoundError, version

try:  # the one source of the version is pyproject.toml, read back from the installed distribution's metadata
    __version__ = version("synthmr")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

del PackageNotFoundError, version
