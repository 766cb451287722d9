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
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` to a mistyped ``name``, else ``""``: the
    fewest edits (case-insensitive; a letter O for a zero, l or I for a one, counts as half an edit), at most
    a quarter of the name's length; ties go to difflib's similarity (``resnet2O`` -> ``resnet20``)."""
    import difflib

    def cost(a: str, b: str) -> float:
        alike = {("o", "0"), ("0", "o"), ("l", "1"), ("1", "l"), ("i", "1"), ("1", "i")}
        prev = [float(j) for j in range(len(b) + 1)]
        for i, ca in enumerate(a, 1):
            cur = [float(i)] + [0.0] * len(b)
            for j, cb in enumerate(b, 1):
                sub = 0.0 if ca == cb else 0.5 if (ca, cb) in alike else 1.0
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + sub)
            prev = cur
        return prev[-1]

    low = name.lower()
    limit = max(1.0, len(name) / 4)
    near = [(d, c) for c in candidates if (d := cost(low, c.lower())) <= limit]
    best = min(((d, -difflib.SequenceMatcher(None, low, c.lower()).ratio(), c) for d, c in near), default=None)
    return f" (did you mean '{best[2]}'?)" if best else ""


def run_script(main) -> int:
    """Run a script's ``main()`` (a benchmark's, say) the way the CLI runs a command: a
    :class:`WeightlabError` ends it with one ``<script>: error: ...`` line and exit status 2, never a
    traceback; Ctrl-C with status 130. Returns ``main()``'s status (None counts as 0)."""
    import os
    import sys

    name = os.path.basename(sys.argv[0]) or "weightlab"
    try:
        return int(main() or 0)
    except WeightlabError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
