"""The ``weightlab`` command line: ``weightlab quickstart``, ``weightlab recast mimic|plan|adapt|evaluate|bench``,
``weightlab know forget|predict|transfer|bench|meta``.

Thin commands over library calls: this package parses options, calls the library and prints; nothing
outside it imports it. Every subcommand takes ``--seed`` and ``--out DIR`` and writes JSON next to a
Markdown table. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from weightlab.cli.common import add_common, add_runtime, apply_runtime, wants
from weightlab.errors import WeightlabError

#: the commands and their one-line help (the stubs of a parser built for one command)
_COMMAND_HELP = {
    "quickstart": "a real end-to-end run on scikit-learn digits (or the shared data)",
    "recast": "RECAST: template banks, Neural Mimicry",
    "know": "KNOW: progressive forgetting, weight prediction (KNOWN and baselines), transfer",
}


def _quickstart_parser(sub) -> None:
    """``weightlab quickstart``."""
    q = sub.add_parser(
        "quickstart",
        help=_COMMAND_HELP["quickstart"],
        description="RECAST: train a CIFAR ResNet-20 on scikit-learn digits (or load the shared pretrained "
        "ResNet-20 when --data-root points at the shared data), rewrite it with RECAST, reconstruct it by "
        "closed form and by the authors' Neural Mimicry recipe, report weight/feature similarity and top-1, "
        "and learn two new tasks with head only and with RECAST coefficients. KNOW: pretrain a small CNN, "
        "record its progressive forgetting, predict x2 / x8 weights (KNOWN and baselines) and transfer them "
        "to a new task against naive transfer. Everything offline, a few minutes on 2 cores.",
    )
    q.add_argument("--data-root", type=Path, default=None, help="shared data folder (MNIST, CIFAR-10 JPEG ...)")
    q.add_argument(
        "--smoke",
        action="store_true",
        help="the same flow at toy sizes (1-2 epochs, 20 mimicry iterations), seconds long: checks an install "
        "or a device; its numbers mean nothing",
    )
    add_common(q)
    add_runtime(q, precision=False)


def build_parser(only: tuple[str, ...] | str | None = None) -> argparse.ArgumentParser:
    """The CLI parser. With ``only`` (the command path typed, e.g. ``("recast", "bench")``; a string is a
    one-word path; ``()`` none) a command off that path is a stub with its help line and no options, so
    that ``--help`` and parsing import only what the typed command needs (no command's help imports torch)."""
    from weightlab.cli.ranges import OneLineParser

    parser = OneLineParser(prog="weightlab", description="Decompose, adapt and predict neural-network weights.")
    parser.add_argument("--version", action="version", version=f"weightlab {__import__('weightlab').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    if isinstance(only, str):
        only = (only,) if only else ()
    for name, line in _COMMAND_HELP.items():
        if not wants(only, (name,)):
            sub.add_parser(name, help=line)
    if wants(only, ("quickstart",)):
        _quickstart_parser(sub)
    if wants(only, ("recast",)):
        from weightlab.cli.recast import add_parsers as add_recast_parsers

        add_recast_parsers(sub, _COMMAND_HELP["recast"])
    if wants(only, ("know",)):
        from weightlab.cli.know import add_parsers as add_know_parsers

        add_know_parsers(sub)
    from weightlab.cli.ranges import apply_ranges

    apply_ranges(parser)
    return parser


#: OS errors a user's paths, permissions or disk cause (not programming errors): one line, exit 2
_USER_ERRNOS = {
    errno.EEXIST: "exists",
    errno.ENOTDIR: "is not a folder (or lies under a file)",
    errno.EISDIR: "is a folder, not a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or folder (or it cannot be made there)",
}
_DISK_WORDS = ("No space left", "Disk quota", "Read-only file system", "Permission denied")


def user_os_error(e: OSError) -> str | None:
    """One line for an OS error the user can cause and fix (naming the path), else None."""
    if e.errno not in _USER_ERRNOS:
        return None
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
    if e.errno == errno.EEXIST and e.filename and Path(str(e.filename)).is_file():
        return f"{e.filename}: is a file, not a folder"
    return f"{where}: {_USER_ERRNOS[e.errno]}" if where else f"{_USER_ERRNOS[e.errno]} ({e.strerror})"


def _one_line(message: str) -> str:
    """The message's last informative line (an error re-raised from a DataLoader worker carries the worker's
    traceback in its message)."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return message.strip()
    last = lines[-1]
    return last.split("WeightlabError: ", 1)[-1]


def _notices_as_lines() -> None:
    """Print a :class:`~weightlab.errors.WeightlabWarning` as one ``weightlab: warning:`` line (a notice:
    ``weightlab: note:``); other warnings as Python prints them."""
    import warnings

    from weightlab.errors import WeightlabNotice, WeightlabWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, WeightlabWarning):
            kind = "note" if issubclass(category, WeightlabNotice) else "warning"
            print(f"weightlab: {kind}: {_one_line(str(message))}", file=sys.stderr)
        elif file is None or file is sys.stderr:
            # another library's warning: held until the command ends, then one line each; dropped when the
            # command fails (its one error line says what is wrong)
            _HELD.append(f"weightlab: warning ({category.__name__}, {Path(filename).name}): {_one_line(str(message))}")
        else:
            shown(message, category, filename, lineno, file, line)

    if getattr(shown, "__name__", "") != "show":
        warnings.showwarning = show


#: other libraries' warnings of the command being run (see _notices_as_lines)
_HELD: list[str] = []


def _flush_held() -> None:
    for line in dict.fromkeys(_HELD):  # each once, in order
        print(line, file=sys.stderr)
    _HELD.clear()


def _command_path(given: list[str]) -> tuple[str, ...]:
    """The command words at the start of the arguments (``recast bench --suite x`` -> ("recast", "bench"));
    none when they do not begin with a known command."""
    words = []
    for a in given:
        if a.startswith("-"):
            break
        words.append(a)
    return tuple(words) if words and words[0] in _COMMAND_HELP else ()


#: how long an idle OpenMP thread spins before it sleeps (libgomp's default is ~300,000 iterations): on a
#: busy CPU spinning threads take the cores the working ones need; 1000 costs ~1-8 % on a quiet CPU and
#: runs the recipe 3-4x faster next to 3 busy processes (benchmarks/omp_contention.py)
GOMP_SPINCOUNT = "1000"


def _tame_openmp() -> None:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a wait policy; read when libgomp loads (with torch),
    so this runs before any command imports it, and worker processes inherit it."""
    import os

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT


def _printable_output() -> None:
    """Text the terminal's encoding cannot show (Θ, ×, … under ``PYTHONIOENCODING=ascii`` or a C locale)
    is escaped, never an UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (getattr(stream, "errors", None) or "strict") == "strict":
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured (closed, detached)
                pass


def main(argv: list[str] | None = None) -> int:
    _HELD.clear()
    code = _main(argv)
    if code == 0:
        _flush_held()
    _HELD.clear()
    return code


def _main(argv: list[str] | None = None) -> int:
    _tame_openmp()
    _printable_output()
    _notices_as_lines()
    given = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_path(given))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line already printed) or --help: a status, not an exception
        return e.code if isinstance(e.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that write how a result was made
    try:
        from weightlab.engine import seed_everything

        seed_everything(args.seed)
        apply_runtime(args)
        if args.command == "quickstart":
            from weightlab.bench.quickstart import run_quickstart

            return run_quickstart(
                data_root=args.data_root,
                out=args.out,
                seed=args.seed,
                progress=not args.no_progress,
                device=args.device,
                smoke=args.smoke,
            )
        if args.command == "recast":
            from weightlab.cli.recast import COMMANDS

            return COMMANDS[args.recast_command](args)
        if args.command == "know":
            from weightlab.cli.know import COMMANDS

            return COMMANDS[args.know_command](args)
    except WeightlabError as e:
        print(f"weightlab: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        line = user_os_error(e)
        if line is None:
            raise  # not something the user's input or machine caused: keep the traceback
        print(f"weightlab: error: {line}", file=sys.stderr)
        return 2
    except Exception as e:
        if type(e).__name__ != "SafetensorError" or not any(w in str(e) for w in _DISK_WORDS):
            raise
        print(f"weightlab: error: writing a safetensors file failed: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("weightlab: interrupted", file=sys.stderr)
        return 130
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
