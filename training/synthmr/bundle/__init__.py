"""Running bundles from tools: their tool description, finding them, and the `synthmr run` runner.

Nothing here needs 3D Slicer: the Slicer module builds its interface from :func:`read_tool_description` and runs
``synthmr run`` in a separate process, following the progress protocol of :mod:`synthmr.bundle.runner`.
"""

from synthmr.bundle.description import InputRole, OutputRole, ToolDescription, read_tool_description
from synthmr.bundle.discovery import find_bundle, list_bundles
from synthmr.bundle.runner import check_inputs, parse_progress_line, print_progress, print_result, run_bundle

__all__ = [
    "InputRole",
    "OutputRole",
    "ToolDescription",
    "check_inputs",
    "find_bundle",
    "list_bundles",
    "parse_progress_line",
    "print_progress",
    "print_result",
    "read_tool_description",
    "run_bundle",
]
