"""The registries' names as the CLI's help and choices need them, without importing torch.

The method, predictor and suite registries live in modules that import torch (their entries are torch
code), which costs seconds. The catalogue is what ``recast adapt``, ``recast bench``, ``know predict`` and
``know bench`` list: data *generated* from the registries, never edited. :func:`load` keeps it in the
weightlab cache under a fingerprint of the package's source files and the installed plugins, and builds
it again (in a child process, so the CLI itself still imports no torch) the first time they change:
adding a method's file is all it takes for the CLI to offer it. ``python -m weightlab.cli.catalogue``
prints it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # src/weightlab


def build() -> dict:
    """The catalogue, from the live registries (imports them, hence torch)."""
    from weightlab.bench.suites import KNOW_SUITES, SUITES
    from weightlab.data.tasks import SEQUENCES
    from weightlab.incremental.methods import method_names
    from weightlab.know.kinds import DEFAULT_KINDS, PREDICTABLE
    from weightlab.know.predictors import PREDICTORS
    from weightlab.recast.config import PRESETS
    from weightlab.registry import option_flag_specs

    return {
        "sequences": list(SEQUENCES),
        "methods": list(method_names()),
        "suites": sorted(SUITES),
        "presets": sorted(PRESETS),
        "know_suites": sorted(KNOW_SUITES),
        "predictors": list(PREDICTORS),
        "default_kinds": list(DEFAULT_KINDS),
        "predictable": list(PREDICTABLE),
        "predictor_flags": option_flag_specs(PREDICTORS.entries()),
    }


def fingerprint() -> str:
    """What the catalogue is made from: every source file of the package (path and bytes), the Python
    that reads them and the installed ``weightlab.plugins`` entry points."""
    from importlib.metadata import entry_points

    from weightlab.registry import PLUGIN_GROUP

    h = hashlib.sha256(sys.version.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: (e.name, e.value)):
        h.update(f"plugin {ep.name}={ep.value}\0".encode())
    return h.hexdigest()[:16]


def path() -> Path:
    from weightlab import paths

    return paths.cache_root() / f"catalogue-{fingerprint()}.json"


@functools.cache
def load() -> dict:
    """The catalogue of the source as it is now (read once per process; treat it as read-only): from the
    cache, or built in a child process and cached (atomically) when the sources changed."""
    where = path()
    if where.is_file():
        try:
            return json.loads(where.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache entry is built again
    done = subprocess.run(
        [sys.executable, "-m", "weightlab.cli.catalogue", "--write", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0 or not where.is_file():
        from weightlab.errors import WeightlabError

        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightlabError(f"could not build the CLI's catalogue of methods and suites: {last}")
    return json.loads(where.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    from weightlab.io import write_json

    cat = build()
    if argv[:1] == ["--write"] and len(argv) == 2:
        write_json(argv[1], cat)
    else:
        print(json.dumps(cat, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
