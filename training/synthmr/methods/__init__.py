"""One module per bundle, named after the bundle: everything specific to its method lives there.

A method module holds what only that method needs (data preparation, network settings, its checkpoint selection
criterion, its evaluation table) and reads top to bottom from the paper it implements; the bundle's configs
import it as ``synthmr.methods.<bundle_name>``. The shared folders (nets, losses, engines, metrics, transforms)
know no method. Submodules are not imported here: a bundle imports only its own.
"""
