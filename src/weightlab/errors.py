"""The one exception type weightlab raises for bad input.

The CLI catches it and prints its message as a single line with a non-zero exit, so every
message must name the problem (which file, which module, which option) on its own.
"""


class WeightlabError(Exception):
    """A user-facing error: bad input, a missing file, an inconsistent configuration."""
