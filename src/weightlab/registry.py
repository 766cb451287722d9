"""One registry pattern for everything weightlab looks up by name: per-task adapters, continual-learning
baselines, KNOW predictors, benchmark suites and model families.

A registered thing is a class (or a value) with its metadata on it: a name, a display name, the paper
it comes from, the model families it applies to, and a typed options dataclass whose fields carry
their help text. Adding a method is one file and one decorator::

    @dataclass
    class MyOptions:
        rank: int = option(1, "rank of the update", minimum=1)

    @ADAPTERS.register("mine", display="Mine", paper="Someone et al. 2025", options=MyOptions)
    class MyAdapter(Adapter): ...

Every registry parses the same ``name:key=value,key=value`` syntax (:func:`parse_spec`) and builds
command-line flags from the options dataclasses (:func:`add_option_flags`), so no method's option is
written by hand anywhere else.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any, Generic, TypeVar, get_type_hints

from weightlab.errors import WeightlabError, did_you_mean

T = TypeVar("T")


def option(
    default: Any,
    help: str,
    *,
    key: str | None = None,
    flag: str | None = None,
    minimum: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """A field of an options dataclass: its default and help text; ``key`` is the name used in
    ``name:key=value`` specs and records when it is not a Python identifier (``lambda``); ``flag``
    the command-line flag when it differs from ``--key``; ``minimum`` / ``choices`` are checked."""
    meta = dict(help=help, key=key, flag=flag, minimum=minimum, choices=choices)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def option_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def option_fields(options_cls: type | None) -> list[dataclasses.Field]:
    return list(dataclasses.fields(options_cls)) if options_cls is not None else []


def option_value(v: str) -> Any:
    """A spec option's text as int, else float, else the string."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def value_kind(hint: Any) -> type | None:
    """``int`` / ``float`` / ``str`` / ``bool`` for an options field's type hint (``X | None`` read as
    ``X``), or None for anything else."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:
        hint = args[0] if len(args) == 1 else None
    return hint if hint in (int, float, str, bool) else None


def _coerce(value: Any, f: dataclasses.Field, hint: Any, where: str) -> Any:
    """``value`` checked against the field's type, minimum and choices."""
    kind = value_kind(hint)
    if value is not None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if kind is float and is_int:
            value = float(value)
        elif kind is int and not is_int:
            raise WeightlabError(f"{where}: option '{option_key(f)}' must be an integer, got {value!r}")
        elif kind is float and not isinstance(value, float):
            raise WeightlabError(f"{where}: option '{option_key(f)}' must be a number, got {value!r}")
        elif kind is str and not isinstance(value, str):
            value = str(value)
        minimum = f.metadata.get("minimum")
        if minimum is not None and isinstance(value, (int, float)) and value < minimum:
            raise WeightlabError(f"{where}: option '{option_key(f)}' must be >= {minimum}, got {value}")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise WeightlabError(
                f"{where}: option '{option_key(f)}' must be one of {', '.join(map(str, choices))}, got {value!r}"
            )
    return value


def build_options(options_cls: type | None, given: dict[str, Any], where: str) -> Any:
    """An instance of ``options_cls`` from ``{key: value}`` (keys as in specs), with one clear error
    naming the option for an unknown key or a value of the wrong type or range."""
    fields = option_fields(options_cls)
    by_key = {option_key(f): f for f in fields}
    unknown = [k for k in given if k not in by_key]
    if unknown:
        known = ", ".join(f"{option_key(f)}={_show(f)}" for f in fields) or "none"
        raise WeightlabError(f"{where}: unknown option '{unknown[0]}' (options: {known})")
    if options_cls is None:
        return None
    hints = get_type_hints(options_cls)
    kwargs = {by_key[k].name: _coerce(v, by_key[k], hints[by_key[k].name], where) for k, v in given.items()}
    return options_cls(**kwargs)


def registered_options(cls: type, given: dict[str, Any], where: str | None = None) -> Any:
    """The options of a registered class (its entry's options dataclass, built from ``{key: value}``
    and checked as :func:`build_options` does; None for a class without options): what adapters,
    predictors and baselines keep as ``self.opts``. Errors name ``where`` (default: the registered name)."""
    entry = getattr(cls, "registry_entry", None)
    where = where or (entry.name if entry is not None else cls.__name__)
    return build_options(entry.options if entry is not None else None, given, where)


def options_dict(options: Any) -> dict[str, Any]:
    """An options dataclass as ``{key: value}`` (the keys specs and records use)."""
    if options is None:
        return {}
    return {option_key(f): getattr(options, f.name) for f in dataclasses.fields(options)}


def _show(f: dataclasses.Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``'lora:r=2,alpha=8'`` -> ``('lora', {'r': 2, 'alpha': 8})``: the one ``name:key=value`` syntax."""
    head, _, opts = text.strip().partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise WeightlabError(f"bad option '{item}' in '{text}' (use name:key=value,key=value)")
        options[k.strip()] = option_value(v.strip())
    return head.strip(), options


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered thing and what is known about it."""

    name: str
    obj: T
    display: str
    paper: str = ""
    families: tuple[str, ...] | None = None  # None: every family
    options: type | None = None
    aliases: tuple[str, ...] = ()
    summary: str = ""

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families

    def build_options(self, given: dict[str, Any]) -> Any:
        return build_options(self.options, given, self.name)


class Registry(Generic[T]):
    """Named things of one kind, in registration order, with their metadata.

    ``register(name, ...)`` is a decorator for classes (and functions); ``add(name, obj, ...)``
    registers a value (a suite definition, a family). The metadata is also set on a registered
    class as ``cls.registry_entry``. A registry made with ``package=`` discovers its entries: the first
    lookup imports every module of that package and the installed plugins. The order of entries carries
    no meaning (files alphabetically, then definition order): whatever is published names its rows."""

    def __init__(self, kind: str, *, package: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        # discovery: the first lookup imports every module of ``package`` (each registers what it defines)
        # and the installed plugins (see :func:`load_plugins`); nothing else lists an entry
        self._package = package
        self._discovered = package is None

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True  # first: a module read during discovery sees what is registered so far
            import_submodules(self._package)
            load_plugins()

    def add(
        self,
        name: str,
        obj: T,
        *,
        display: str | None = None,
        paper: str = "",
        families: tuple[str, ...] | None = None,
        options: type | None = None,
        aliases: tuple[str, ...] = (),
        summary: str = "",
    ) -> Entry[T]:
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        doc = summary or ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
        entry = Entry(
            name,
            obj,
            display or name,
            paper,
            tuple(families) if families is not None else None,
            options,
            tuple(aliases),
            doc,
        )
        self._entries[name] = entry
        for a in aliases:
            self._aliases[a] = name
        if isinstance(obj, type):
            obj.registry_entry = entry  # type: ignore[attr-defined]
        return entry

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return deco

    def resolve(self, name: str) -> str | None:
        """The registered name for ``name`` (itself, or what it is an alias of), or None."""
        self._discover()
        key = name.strip()
        key = self._aliases.get(key, key)
        return key if key in self._entries else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def entry(self, name: str) -> Entry[T]:
        self._discover()
        key = self.resolve(name)
        if key is None:
            hint = did_you_mean(name, self._entries)
            raise WeightlabError(f"unknown {self.kind} '{name}'{hint} (use one of {', '.join(self._entries)})")
        return self._entries[key]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def names(self, family: str | None = None) -> list[str]:
        self._discover()
        return [n for n, e in self._entries.items() if family is None or e.applies_to(family)]

    def entries(self) -> list[Entry[T]]:
        self._discover()
        return list(self._entries.values())

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(self._entries)

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    def items(self):
        self._discover()
        return [(n, e.obj) for n, e in self._entries.items()]


PLUGIN_GROUP = "weightlab.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import, once per process, every module installed under the ``weightlab.plugins`` entry-point group
    (a package outside weightlab that registers methods, predictors, baselines or models, e.g.
    ``[project.entry-points."weightlab.plugins"] mine = "mypkg.methods"``). A plugin that fails to
    import is an error naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - one line naming the plugin, whatever it raised
            raise WeightlabError(f"weightlab plugin '{ep.name}' ({ep.value}) failed to import: {e}") from e


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (alphabetically), so that each registers what it defines: a
    new method is picked up by adding its file; nothing else lists it."""
    pkg = importlib.import_module(package)
    for name in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{package}.{name}")


def option_flag_specs(entries) -> list[dict]:
    """One JSON-able spec per ``--flag`` the options dataclasses of ``entries`` (:class:`Entry` list) give
    (deduplicated by flag): flag, dest, kind (int / float / str / bool), choices, metavar, help, the option's
    key and the methods that take it. :func:`add_flag_specs` turns them into argparse arguments."""
    seen: dict[str, dict] = {}
    for entry in entries:
        for f in option_fields(entry.options):
            flag = f.metadata.get("flag") or option_key(f).replace("_", "-")
            slot = seen.setdefault(flag, dict(field=f, methods=[], hint=get_type_hints(entry.options)[f.name]))
            slot["methods"].append(entry.name)
    specs = []
    for flag, slot in seen.items():
        f = slot["field"]
        text = f.metadata.get("help", "")
        default = "" if "default" in text else f"; default {_show(f)}"
        choices = f.metadata.get("choices")
        specs.append(
            dict(
                flag=flag,
                dest="opt_" + flag.replace("-", "_"),
                kind=(value_kind(slot["hint"]) or str).__name__,
                choices=list(choices) if choices else None,
                metavar=None if choices else flag.replace("-", "_").upper(),
                help=f"{text} ({', '.join(slot['methods'])}{default})",
                key=option_key(f),
                methods=slot["methods"],
            )
        )
    return specs


_KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def add_flag_specs(parser, specs: list[dict], *, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, list[str]]]:
    """Add the ``--flag`` of every spec from :func:`option_flag_specs`; returns ``{dest: (key, methods)}``
    for :func:`options_from_flags`."""
    owners = {}
    for spec in specs:
        if spec["flag"] in skip:
            continue
        parser.add_argument(
            f"--{spec['flag']}",
            dest=spec["dest"],
            type=_KINDS[spec["kind"]],
            default=None,
            choices=spec["choices"],
            metavar=spec["metavar"],
            help=spec["help"],
        )
        owners[spec["dest"]] = (spec["key"], list(spec["methods"]))
    return owners


def add_option_flags(parser, registries_or_classes, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, list[str]]]:
    """Add one ``--flag`` per option field of the given options dataclasses (deduplicated by flag),
    with the field's help text and the methods that take it; returns ``{dest: (key, methods)}``.

    ``registries_or_classes``: a list of :class:`Entry` (their ``options``)."""
    return add_flag_specs(parser, option_flag_specs(registries_or_classes), skip=skip)


def options_from_flags(args, owners: dict, method: str) -> dict[str, Any]:
    """The ``{key: value}`` options a command line gave for ``method``; a flag given for a method
    that does not take it is an error naming both."""
    out = {}
    for dest, (key, methods) in owners.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if method not in methods:
            raise WeightlabError(
                f"--{dest[4:].replace('_', '-')} does not apply to {method} (only {', '.join(methods)})"
            )
        out[key] = value
    return out


__all__ = [
    "Registry",
    "Entry",
    "import_submodules",
    "load_plugins",
    "option",
    "option_key",
    "option_fields",
    "option_value",
    "build_options",
    "registered_options",
    "options_dict",
    "parse_spec",
    "add_option_flags",
    "options_from_flags",
]
