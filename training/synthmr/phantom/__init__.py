"""Simulated multiparametric MRI: the default data of SynthMR (DESIGN §5)."""

from synthmr.phantom.case import PhantomCase

__all__ = ["PhantomCase"]
