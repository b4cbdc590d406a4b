"""SynthMR: lesion-controllable multiparametric MRI synthesis (MONAI Bundles, phantom, Slicer module)."""

__version__ = "0.1.0"
