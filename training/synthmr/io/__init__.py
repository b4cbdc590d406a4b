"""Reading and writing images and datalists, keeping geometry."""

from synthmr.io.volume import Volume

__all__ = ["Volume"]
