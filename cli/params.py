"""Command-line options from an entrypoint's signature (ENT-02, ENT-03).

`def main(count: int, ratio: float = 0.5, shout: bool = False)` becomes
`modal run app.py --count 3 [--ratio 0.5] [--shout/--no-shout]`:

- supported types are `str`, `int`, `float`, `bool` (as `--flag/--no-flag`) and
  `datetime.datetime` (`2024-05-06`, `2024-05-06T12:00:00`, `2024-05-06 12:00:00`), also wrapped
  in `Optional[...]`; an unannotated parameter takes the type of its default, else `str`;
- a parameter with a default is optional, one without is a required option;
- option names use dashes (`--my-arg`); the underscore spelling (`--my_arg`) is accepted too;
- a `*args` parameter switches parsing off: every token is passed through as a string, so the
  program can use argparse itself.

The options are a one-command typer app built from a synthesized signature, so `--help` and usage
errors look like every other `modal` command. Nothing here imports the user's app or starts Ray.
"""

from __future__ import annotations

import datetime
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer
import typer.main

from modal.exception import InvalidError

SUPPORTED_TYPES: tuple[type, ...] = (str, int, float, bool, datetime.datetime)

_BY_NAME: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "datetime": datetime.datetime,
    "datetime.datetime": datetime.datetime,
}

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class CliParam:
    """One parameter of the entrypoint, as a command-line option."""

    name: str
    type: type
    default: Any = _EMPTY
    positional_only: bool = False

    @property
    def required(self) -> bool:
        return self.default is _EMPTY

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def declaration(self) -> str:
        if self.type is bool:
            return f"{self.option}/--no-{self.option[2:]}"
        return self.option


@dataclass(frozen=True, slots=True)
class CliSignature:
    """The options of one entrypoint; `variadic` when it takes `*args` (tokens pass through)."""

    function_name: str
    params: tuple[CliParam, ...]
    variadic: bool = False

    def call_args(self, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for the parsed option values."""
        args = tuple(values[p.name] for p in self.params if p.positional_only)
        kwargs = {p.name: values[p.name] for p in self.params if not p.positional_only}
        return args, kwargs


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap_optional(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _unwrap_optional(members[0])
    return tp


def _from_string(annotation: str) -> Any:
    """A best effort for string annotations that `get_type_hints` could not evaluate."""
    text = annotation.replace(" ", "")
    for wrapper in ("Optional[", "typing.Optional["):
        if text.startswith(wrapper) and text.endswith("]"):
            text = text[len(wrapper) : -1]
    parts = [p for p in text.split("|") if p != "None"]
    if len(parts) == 1 and parts[0] in _BY_NAME:
        return _BY_NAME[parts[0]]
    return annotation


def _param_type(param: inspect.Parameter, hints: dict[str, Any], function_name: str) -> type:
    annotation = hints.get(param.name, param.annotation)
    if isinstance(annotation, str):
        annotation = _from_string(annotation)
    if annotation is _EMPTY or annotation is Any:
        default = param.default
        if default is not _EMPTY and default is not None and type(default) in SUPPORTED_TYPES:
            return type(default)
        return str
    tp = _unwrap_optional(annotation)
    if tp in SUPPORTED_TYPES:
        return tp  # type: ignore[no-any-return]
    supported = "str, int, float, bool, datetime.datetime"
    raise InvalidError(
        f"Parameter `{param.name}` of `{function_name}` has type {_type_name(annotation)}, which"
        f" `modal run` cannot parse from the command line (supported: {supported}). Take a"
        " supported type, or `*args` to parse the arguments yourself."
    )


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def cli_signature(f: Callable[..., Any], name: str | None = None) -> CliSignature:
    """The command-line options of `f`, or an `InvalidError` naming a parameter it cannot parse."""
    function_name: str = name or str(getattr(f, "__name__", "entrypoint"))
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError) as exc:
        raise InvalidError(f"Cannot read the signature of `{function_name}`: {exc}") from None
    try:
        hints = typing.get_type_hints(f)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return CliSignature(function_name, (), variadic=True)
    params: list[CliParam] = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            continue  # `**kwargs` has no command-line spelling; it receives nothing
        params.append(
            CliParam(
                name=p.name,
                type=_param_type(p, hints, function_name),
                default=p.default,
                positional_only=p.kind is inspect.Parameter.POSITIONAL_ONLY,
            )
        )
    return CliSignature(function_name, tuple(params))


def _normalize_token(token: str) -> str:
    return token.replace("_", "-")


def build_command(
    sig: CliSignature, callback: Callable[[dict[str, Any]], None], help_text: str | None = None
) -> Any:
    """A typer (click) command whose options are `sig`'s; it calls `callback(values)`."""

    def _collect(**values: Any) -> None:
        callback(values)

    parameters = []
    for p in sig.params:
        default = ... if p.required else p.default
        option = typer.Option(default, p.declaration, show_default=not p.required)
        parameters.append(
            inspect.Parameter(
                p.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=p.type
            )
        )
    # typer prefers `__annotations__` over the signature's; a user parameter named `values` would
    # otherwise take `_collect`'s own annotation.
    _collect.__annotations__ = {}
    _collect.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    app = typer.Typer(
        add_completion=False,
        context_settings={"token_normalize_func": _normalize_token},
    )
    if help_text:
        from rich.markup import escape

        help_text = escape(inspect.cleandoc(help_text))
    app.command(name=sig.function_name, help=help_text or None)(_collect)
    return typer.main.get_command(app)


def parse_cli_args(
    sig: CliSignature,
    tokens: Sequence[str],
    *,
    prog_name: str,
    help_text: str | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Parse `tokens` for `sig`: `(args, kwargs)`, or None when `--help` was shown.

    Usage errors raise typer's (click's) `UsageError`, which the CLI prints with exit status 2.
    """
    if sig.variadic:
        return tuple(tokens), {}
    parsed: list[dict[str, Any]] = []
    command = build_command(sig, parsed.append, help_text)
    command.main(args=list(tokens), prog_name=prog_name, standalone_mode=False)
    if not parsed:
        return None
    return sig.call_args(parsed[0])
