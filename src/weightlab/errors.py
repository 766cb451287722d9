"""The one exception type weightlab raises for bad input.

The CLI catches it and prints its message as a single line with a non-zero exit, so every
message must name the problem (which file, which module, which option) on its own.
"""


class WeightlabError(Exception):
    """A user-facing error: bad input, a missing file, an inconsistent configuration."""


class WeightlabWarning(UserWarning):
    """A result the user should not trust blindly (e.g. a RECAST base that does not reproduce the model).
    The CLI prints it as one ``weightlab: warning:`` line."""


class WeightlabNotice(WeightlabWarning):
    """Something weightlab decided for the user that they should know (e.g. a test split it held out
    itself). The CLI prints it as one ``weightlab: note:`` line."""


def did_you_mean(name: str, candidates) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` to a mistyped ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""
