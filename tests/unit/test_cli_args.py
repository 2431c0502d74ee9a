"""The `modal` CLI without Ray: FUNC_REF parsing, entrypoint resolution, signature -> options,
and the error/exit-status contract of `main()`.

Runs that would start Ray use a stand-in for `App.run` and the backend connection; the real runs
are in tests/e2e/test_cli_run.py.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import re
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

import modal
from modal.exception import InvalidError, NotFoundError
from modal_ray.cli import main
from modal_ray.cli import run as run_module
from modal_ray.cli.import_refs import (
    ImportRef,
    import_file,
    parse_import_ref,
    resolve_runnable,
)
from modal_ray.cli.params import cli_signature, parse_cli_args

# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def write_app(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Write a user file with a unique module name; forget the module and sys.path afterwards."""
    saved_path = list(sys.path)
    names: list[str] = []

    def _write(source: str) -> Path:
        name = f"cliapp_{uuid.uuid4().hex[:10]}"
        names.append(name)
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    yield _write
    sys.path[:] = saved_path
    for name in names:
        sys.modules.pop(name, None)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `modal <args>` in process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Let `modal run` go through its motions with `App.run` and the connection stubbed out."""
    runs: list[dict[str, Any]] = []

    def fake_run(self: Any, **kwargs: Any) -> Any:
        runs.append({"app": self, **kwargs})
        return contextlib.nullcontext(self)

    monkeypatch.setattr(modal.App, "run", fake_run)
    monkeypatch.setattr(run_module, "_connect_on_this_thread", lambda env: None)
    monkeypatch.setenv("RAY_COLOR_PREFIX", "0")  # `modal run` sets it when stdout is not a tty
    return runs


TWO_FUNCTIONS = """
    import modal

    app = modal.App("two")

    @app.function()
    def f(x: int = 1) -> int:
        return x

    @app.function()
    def g() -> None:
        pass
"""


# -- FUNC_REF parsing --------------------------------------------------------------------------


def test_parse_file_refs() -> None:
    assert parse_import_ref("app.py") == ImportRef("app.py", False, "")
    assert parse_import_ref("dir/app.py::main") == ImportRef("dir/app.py", False, "main")
    assert parse_import_ref("app.py::app.f") == ImportRef("app.py", False, "app.f")


def test_parse_module_refs(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_import_ref("pkg.mod", use_module_mode=True) == ImportRef("pkg.mod", True, "")
    assert parse_import_ref("pkg.mod::app.f", use_module_mode=True) == ImportRef(
        "pkg.mod", True, "app.f"
    )
    assert capsys.readouterr().err == ""


def test_module_path_without_m_warns_and_runs_as_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_import_ref("pkg.mod::f") == ImportRef("pkg.mod", True, "f")
    err = capsys.readouterr().err
    assert err.startswith("Warning:")
    assert "modal run -m pkg.mod::f" in err


@pytest.mark.parametrize("ref", ["app.py::", "::f", ""])
def test_parse_rejects_malformed_refs(ref: str) -> None:
    with pytest.raises(InvalidError, match="Invalid reference"):
        parse_import_ref(ref)


def test_module_mode_rejects_a_file() -> None:
    with pytest.raises(InvalidError, match="`-m` takes a Python module path"):
        parse_import_ref("app.py", use_module_mode=True)


# -- importing and resolving -------------------------------------------------------------------


def test_file_is_imported_under_its_stem_not_main(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()
        RAN_MAIN_BLOCK = False
        if __name__ == "__main__":
            RAN_MAIN_BLOCK = True
        """
    )
    module = import_file(path)
    assert module.__name__ == path.stem
    assert sys.modules[path.stem] is module
    assert module.RAN_MAIN_BLOCK is False
    assert sys.path[0] == str(path.parent.resolve())
    assert import_file(path) is module  # a second import reuses it


def test_import_refuses_to_shadow_another_module(tmp_path: Path) -> None:
    path = tmp_path / "json.py"
    path.write_text("x = 1\n")
    with pytest.raises(InvalidError, match="already imported"):
        import_file(path)


def test_import_missing_file() -> None:
    with pytest.raises(NotFoundError, match="File not found"):
        import_file("/no/such/file.py")


def test_single_local_entrypoint_is_chosen(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.function()
        def f(): ...

        @app.local_entrypoint()
        def main(): ...
        """
    )
    ref = parse_import_ref(str(path))
    r = resolve_runnable(import_file(path), ref)
    assert (r.kind, r.tag, r.app_var) == ("entrypoint", "main", "app")


def test_single_function_without_entrypoint_is_chosen(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.function()
        def only(x: int) -> int:
            return x
        """
    )
    r = resolve_runnable(import_file(path), parse_import_ref(str(path)))
    assert (r.kind, r.tag) == ("function", "only")
    assert r.raw_f(3) == 3


def test_ambiguous_reference_lists_candidates(write_app: Callable[[str], Path]) -> None:
    path = write_app(TWO_FUNCTIONS)
    with pytest.raises(InvalidError) as info:
        resolve_runnable(import_file(path), parse_import_ref(str(path)))
    message = str(info.value)
    assert "app.f, app.g" in message
    assert f"modal run {path}::app.f" in message
    assert "\n" not in message


def test_two_entrypoints_are_ambiguous(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.local_entrypoint()
        def one(): ...

        @app.local_entrypoint()
        def two(): ...
        """
    )
    with pytest.raises(InvalidError, match="2 local entrypoints"):
        resolve_runnable(import_file(path), parse_import_ref(str(path)))


@pytest.mark.parametrize(
    ("object_path", "expected"),
    [("f", "f"), ("g", "g"), ("app.g", "g"), ("main", "main"), ("app.main", "main")],
)
def test_named_references(
    write_app: Callable[[str], Path], object_path: str, expected: str
) -> None:
    path = write_app(
        TWO_FUNCTIONS
        + """
    @app.local_entrypoint()
    def main(): ...
    """
    )
    r = resolve_runnable(import_file(path), parse_import_ref(f"{path}::{object_path}"))
    assert r.tag == expected


def test_app_variable_reference_picks_within_that_app(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        first = modal.App("first")
        second = modal.App("second")

        @first.function()
        def a(): ...

        @second.function()
        def b(): ...
        """
    )
    module = import_file(path)
    r = resolve_runnable(module, parse_import_ref(f"{path}::second"))
    assert (r.tag, r.app_var, r.app.name) == ("b", "second", "second")
    with pytest.raises(InvalidError, match=r"first\.a, second\.b"):
        resolve_runnable(module, parse_import_ref(str(path)))


def test_reference_by_custom_name(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.function(name="renamed")
        def original(): ...

        @app.function()
        def other(): ...
        """
    )
    module = import_file(path)
    assert resolve_runnable(module, parse_import_ref(f"{path}::renamed")).tag == "renamed"
    assert resolve_runnable(module, parse_import_ref(f"{path}::original")).tag == "renamed"


def test_unknown_name_is_not_found(write_app: Callable[[str], Path]) -> None:
    path = write_app(TWO_FUNCTIONS)
    with pytest.raises(NotFoundError, match="No local entrypoint or function named `nope`"):
        resolve_runnable(import_file(path), parse_import_ref(f"{path}::nope"))
    with pytest.raises(NotFoundError, match=r"`app\.nope`"):
        resolve_runnable(import_file(path), parse_import_ref(f"{path}::app.nope"))


def test_class_method_reference_needs_an_app_cls(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        TWO_FUNCTIONS
        + """
    class Model:
        def predict(self): ...
    """
    )
    with pytest.raises(NotFoundError, match=r"@app\.cls"):
        resolve_runnable(import_file(path), parse_import_ref(f"{path}::Model.predict"))


def test_class_method_reference_runs_a_method(write_app: Callable[[str], Path]) -> None:
    path = write_app(
        TWO_FUNCTIONS
        + """
    @app.cls()
    class Model:
        size: int = modal.parameter(default=1)

        @modal.method()
        def predict(self, x: int, scale: float = 2.0) -> float:
            return x * scale
    """
    )
    runnable = resolve_runnable(import_file(path), parse_import_ref(f"{path}::Model.predict"))
    assert runnable.tag == "Model.predict"
    assert list(inspect.signature(runnable.raw_f).parameters) == ["x", "scale"]


def test_file_without_app(write_app: Callable[[str], Path]) -> None:
    path = write_app("x = 1\n")
    with pytest.raises(InvalidError, match=r"No modal.App found"):
        resolve_runnable(import_file(path), parse_import_ref(str(path)))


# -- signature -> options ----------------------------------------------------------------------


def _entry(
    count: int,
    ratio: float = 0.5,
    name: str = "world",
    shout: bool = False,
    day: Optional[datetime.datetime] = None,  # noqa: UP045 - the typing spelling is supported too
    my_arg: str | None = None,
    inferred=3,  # unannotated on purpose: the type comes from the default
) -> None:
    """Doc [with brackets]."""


def test_signature_types_and_defaults() -> None:
    sig = cli_signature(_entry)
    assert not sig.variadic
    got = {p.name: (p.type, p.required, p.declaration) for p in sig.params}
    assert got == {
        "count": (int, True, "--count"),
        "ratio": (float, False, "--ratio"),
        "name": (str, False, "--name"),
        "shout": (bool, False, "--shout/--no-shout"),
        "day": (datetime.datetime, False, "--day"),
        "my_arg": (str, False, "--my-arg"),
        "inferred": (int, False, "--inferred"),
    }


def test_parse_values() -> None:
    sig = cli_signature(_entry)
    parsed = parse_cli_args(
        sig,
        ["--count", "3", "--ratio=0.25", "--shout", "--day", "2024-05-06", "--my_arg", "x_y"],
        prog_name="modal run app.py",
    )
    assert parsed == (
        (),
        {
            "count": 3,
            "ratio": 0.25,
            "name": "world",
            "shout": True,
            "day": datetime.datetime(2024, 5, 6),
            "my_arg": "x_y",
            "inferred": 3,
        },
    )


def test_parse_bool_negation_and_defaults() -> None:
    def f(flag: bool = True, n: int = 1) -> None: ...

    assert parse_cli_args(cli_signature(f), ["--no-flag"], prog_name="x") == (
        (),
        {"flag": False, "n": 1},
    )


def test_missing_required_option_is_a_usage_error() -> None:
    with pytest.raises(Exception, match="count") as info:
        parse_cli_args(cli_signature(_entry), [], prog_name="modal run app.py")
    assert getattr(info.value, "exit_code", None) == 2
    assert "--count" in info.value.format_message()  # type: ignore[attr-defined]


def test_bad_value_is_a_usage_error() -> None:
    with pytest.raises(Exception, match="integer") as info:
        parse_cli_args(cli_signature(_entry), ["--count", "many"], prog_name="modal run app.py")
    assert getattr(info.value, "exit_code", None) == 2
    assert "--count" in info.value.format_message()  # type: ignore[attr-defined]


def test_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        parse_cli_args(
            cli_signature(_entry),
            ["--help"],
            prog_name="modal run app.py",
            help_text=_entry.__doc__,
        )
        is None
    )
    out = capsys.readouterr().out
    for option in ("--count", "--ratio", "--no-shout", "--my-arg", "modal run app.py"):
        assert option in out
    assert "Doc [with brackets]." in out


def test_varargs_receive_raw_tokens() -> None:
    def f(*argv: str) -> None: ...

    sig = cli_signature(f)
    assert sig.variadic
    tokens = ["--foo=42", "--bar", "baz", "--help"]
    assert parse_cli_args(sig, tokens, prog_name="x") == (tuple(tokens), {})


def test_positional_only_parameters_are_passed_positionally() -> None:
    def f(a: int, /, b: str = "x") -> None: ...

    assert parse_cli_args(cli_signature(f), ["--a", "1", "--b", "y"], prog_name="x") == (
        (1,),
        {"b": "y"},
    )


def test_string_annotations_resolve() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "def f(n: int, when: datetime.datetime | None = None, name: Undefined = 'x'): ...\n",
        namespace,
    )
    with pytest.raises(InvalidError, match="Parameter `name`"):
        cli_signature(namespace["f"])
    exec("def g(n: 'int', flag: 'bool' = False): ...\n", namespace)
    assert [p.type for p in cli_signature(namespace["g"]).params] == [int, bool]


def test_unsupported_type_is_rejected() -> None:
    def f(items: list[str]) -> None: ...

    with pytest.raises(InvalidError, match=r"Parameter `items` of `f` has type list\[str\]"):
        cli_signature(f)


# -- main(): exit statuses and messages --------------------------------------------------------


def test_root_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["--help"], capsys)
    assert code == 0
    assert "run" in out
    assert "secret" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["--version"], capsys)
    assert code == 0
    assert out.startswith(f"modal client version: {modal.__version__}")


def test_run_help_shows_entrypoint_options(
    write_app: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.local_entrypoint()
        def main(foo: int, bar: str = "hello"):
            '''Say things.'''
        """
    )
    code, out, _ = cli(["run", str(path), "--help"], capsys)
    assert code == 0
    assert "--foo" in out
    assert "--bar" in out
    assert "Say things." in out


def test_ambiguous_run_prints_one_error_line(
    write_app: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_app(TWO_FUNCTIONS)
    code, _, err = cli(["run", str(path)], capsys)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("Error: ")
    assert "app.f, app.g" in err


def test_missing_option_exits_2(
    write_app: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_app(
        """
        import modal
        app = modal.App()

        @app.local_entrypoint()
        def main(foo: int): ...
        """
    )
    code, _, err = cli(["run", str(path)], capsys)
    assert code == 2
    assert "--foo" in err


# Frames of modal-ray itself and of the CLI framework, never the user's: a trimmed traceback
# shows none of them.
INTERNAL_FRAMES = re.compile(r"/(modal_ray|modal|cli|compat|backends|typer|click)/\S+\.py\"")


def test_import_error_shows_the_users_traceback(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_app(
        """
        def load():
            raise RuntimeError('broken at import')

        load()
        """
    )
    code, _, err = cli(["run", str(path)], capsys)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert f'  File "{path}", line 5, in <module>' in lines
    assert f'  File "{path}", line 3, in load' in lines
    assert lines[-1] == "RuntimeError: broken at import"
    assert not INTERNAL_FRAMES.search(err), err
    assert "importlib" not in err
    # MODAL_TRACEBACK=1: the whole traceback, modal-ray's frames included.
    monkeypatch.setenv("MODAL_TRACEBACK", "1")
    code, _, err = cli(["run", str(path)], capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "import_refs.py" in err


def test_entrypoint_error_shows_the_users_traceback(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
) -> None:
    path = write_app(
        """
        import asyncio
        import modal

        app = modal.App()

        def helper():
            return undefined_name

        @app.local_entrypoint()
        def main():
            helper()

        @app.local_entrypoint()
        async def amain():
            await asyncio.sleep(0)
            raise ValueError("async boom")
        """
    )
    code, _, err = cli(["run", "-q", f"{path}::main"], capsys)
    assert code == 1
    assert err.splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{path}", line 12, in main',
        "    helper()",
        f'  File "{path}", line 8, in helper',
        "    return undefined_name",
        "           ^^^^^^^^^^^^^^",
        "NameError: name 'undefined_name' is not defined",
    ]
    # An async entrypoint: asyncio's own frames are not shown either.
    code, _, err = cli(["run", "-q", f"{path}::amain"], capsys)
    assert code == 1
    assert err.splitlines()[:3] == [
        "Traceback (most recent call last):",
        f'  File "{path}", line 17, in amain',
        '    raise ValueError("async boom")',
    ]
    assert err.splitlines()[-1] == "ValueError: async boom"
    assert "asyncio" not in err


def test_modal_error_raised_in_user_code_shows_where(
    write_app: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_app(
        """
        import modal

        app = modal.App()

        @app.function
        def f(): ...
        """
    )
    code, _, err = cli(["run", str(path)], capsys)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert f'  File "{path}", line 6, in <module>' in lines
    assert lines[-1].startswith("modal.exception.InvalidError: `@app.function` was used without")
    assert not INTERNAL_FRAMES.search(err), err


def test_remote_failure_carries_the_users_view(write_app: Callable[[str], Path]) -> None:
    import pickle

    from modal_ray.errors import RemoteFailure, format_user_traceback

    path = write_app(
        """
        def lookup(d):
            try:
                return d["missing_key"]
            except KeyError as exc:
                raise LookupError("no key") from exc
        """
    )
    module = import_file(path)
    try:
        module.lookup({})
    except LookupError as exc:
        failure = RemoteFailure.capture(exc, "full worker traceback")
    revived = pickle.loads(pickle.dumps(failure)).to_exception("lookup")
    # Printed by Python (a script): the remote part shows the user's frames, causes first.
    remote = str(revived.__cause__)
    assert "full worker traceback" not in remote
    assert remote.index("KeyError: 'missing_key'") < remote.index(f'File "{path}", line 6')
    assert remote.rstrip().endswith("LookupError: no key")
    # Printed by the CLI: one traceback, the remote frames after the local ones.
    try:
        raise revived
    except LookupError as exc:
        text = format_user_traceback(exc)
    assert text is not None
    assert text.splitlines()[-3:] == [
        f'  File "{path}", line 6, in lookup',
        '    raise LookupError("no key") from exc',
        "LookupError: no key",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_file.py"], "Error: File not found: no_such_file.py"),
        (["run", "-m", "a/b.py"], "Error: `-m` takes a Python module path"),
        (["run", "{path}::nope"], "Error: No local entrypoint or function named `nope`"),
        (["run", "{path}", "--x", "2"], "Error: {path} has 0 local entrypoints"),
    ],
)
def test_usage_errors_stay_one_line(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = write_app(TWO_FUNCTIONS)
    args = [a.format(path=path) for a in args]
    code, _, err = cli(args, capsys)
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith(message.format(path=path)), err
    assert "Traceback" not in err


ENTRYPOINT_APP = """
    import asyncio
    import sys
    import modal

    app = modal.App("ep")
    seen = {}

    @app.local_entrypoint()
    def main(count: int, label: str = "x", loud: bool = False):
        seen.update(count=count, label=label, loud=loud, argv=list(sys.argv), name=__name__)
        print(f"count={count} label={label} loud={loud}")
        return label * count

    @app.local_entrypoint()
    async def amain(n: int = 2) -> bytes:
        await asyncio.sleep(0)
        return b"z" * n

    @app.local_entrypoint()
    def number() -> int:
        return 7
"""


def test_run_entrypoint_with_args_and_write_result(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_app(ENTRYPOINT_APP)
    out_file = tmp_path / "result.txt"
    argv_before = list(sys.argv)
    code, out, err = cli(
        ["run", "-q", "-w", str(out_file), "-e", "dev", f"{path}::main", "--count", "3",
         "--label", "ab", "--loud"],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == "count=3 label=ab loud=True\n"
    assert out_file.read_text() == "ababab"
    module = sys.modules[path.stem]
    assert module.seen["name"] == path.stem
    assert module.seen["argv"] == [str(path.resolve()), "--count", "3", "--label", "ab", "--loud"]
    assert sys.argv == argv_before
    assert no_ray[0]["environment_name"] == "dev"
    assert no_ray[0]["detach"] is False


def test_run_async_entrypoint_writes_bytes(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_app(ENTRYPOINT_APP)
    out_file = tmp_path / "result.bin"
    code, _, err = cli(
        ["run", "-q", "-i", "--write-result", str(out_file), f"{path}::amain", "--n", "4"], capsys
    )
    assert code == 0
    assert out_file.read_bytes() == b"zzzz"
    assert "Warning: interactive mode" in err


def test_write_result_rejects_other_types(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_app(ENTRYPOINT_APP)
    code, _, err = cli(["run", "-q", "-w", str(tmp_path / "r"), f"{path}::number"], capsys)
    assert code == 1
    assert err.startswith("Error: `--write-result` needs the entrypoint to return str or bytes")
    assert err.endswith("but it returned int.\n")


def test_run_name_and_detach_reach_app_run(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODAL_RAY_ADDRESS", "ray://example:10001")
    path = write_app(ENTRYPOINT_APP)
    code, _, _ = cli(["run", "-q", "-d", "-n", "nightly", f"{path}::number"], capsys)
    assert code == 0
    assert no_ray[0]["detach"] is True
    assert no_ray[0]["name"] == "nightly"


def test_detach_on_the_embedded_ray_says_what_to_run(
    write_app: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    no_ray: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MODAL_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = write_app(ENTRYPOINT_APP)
    code, _, err = cli(["run", "-q", "-d", f"{path}::number"], capsys)
    assert code == 0
    assert no_ray[0]["detach"] is True  # the run still waits for its work before it exits
    assert "embedded local Ray stops when this process exits" in err
    assert "modal-ray cluster start" in err


def test_timestamped_stream_prefixes_each_line() -> None:
    import io
    import threading

    inner = io.StringIO()
    stream = run_module._TimestampedStream(inner, threading.Lock())
    stream.write("one\ntw")
    stream.write("o\n\nthree")
    lines = inner.getvalue().split("\n")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* "
    assert [re.sub(stamp, "<t> ", line) for line in lines] == [
        "<t> one",
        "<t> two",
        "<t> ",
        "<t> three",
    ]


# -- modal secret ------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("MODAL_RAY_STATE", str(root))
    monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)
    return root


def test_secret_create_list_delete(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["secret", "create", "creds", "USER=me", "PASS=a=b c"], capsys)
    assert code == 0
    assert "'USER', 'PASS'" in out
    assert "PASS=a=b c" not in out  # values are never echoed
    assert modal.Secret.from_name("creds")._resolve() == {"USER": "me", "PASS": "a=b c"}

    code, _, err = cli(["secret", "create", "creds", "USER=you"], capsys)
    assert code == 1
    assert "already exists" in err
    code, _, _ = cli(["secret", "create", "creds", "USER=you", "--force"], capsys)
    assert code == 0
    assert modal.Secret.from_name("creds")._resolve() == {"USER": "you"}

    code, out, _ = cli(["secret", "list", "--json"], capsys)
    assert code == 0
    records = json.loads(out)
    assert [r["Name"] for r in records] == ["creds"]
    assert datetime.datetime.fromisoformat(records[0]["Created at"])

    code, out, _ = cli(["secret", "list"], capsys)
    assert code == 0
    assert "creds" in out

    code, out, _ = cli(["secret", "delete", "creds", "--yes"], capsys)
    assert code == 0
    code, out, _ = cli(["secret", "list", "--json"], capsys)
    assert json.loads(out) == []


def test_secret_sources_and_environments(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('A=1\nB="two words"\n')
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"B": "from json", "N": 3}))
    code, _, _ = cli(
        ["secret", "create", "mixed", "--from-dotenv", str(dotenv), "--from-json", str(js),
         "C=3", "-e", "dev"],
        capsys,
    )  # fmt: skip
    assert code == 0
    secret = modal.Secret.from_name("mixed", environment_name="dev")
    assert secret._resolve() == {"A": "1", "B": "from json", "N": "3", "C": "3"}
    code, out, _ = cli(["secret", "list", "--json"], capsys)
    assert json.loads(out) == []
    code, out, _ = cli(["secret", "list", "--json", "--env", "dev"], capsys)
    assert [r["Name"] for r in json.loads(out)] == ["mixed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["secret", "create", "s", "NOEQUALS"], "KEY=VALUE"),
        (["secret", "create", "s"], "at least one key"),
        (["secret", "create", "bad name!", "A=1"], "Invalid Secret name"),
        (["secret", "delete", "missing", "-y"], "not found"),
    ],
)
def test_secret_errors(
    state: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = cli(args, capsys)
    assert code == 1
    assert err.startswith("Error: ")
    assert message in err


def test_secret_delete_needs_confirmation(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    cli(["secret", "create", "keep", "A=1"], capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = cli(["secret", "delete", "keep"], capsys)
    assert code == 1
    assert "--yes" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, _, _ = cli(["secret", "delete", "keep"], capsys)
    assert code == 1
    assert modal.Secret.from_name("keep")._resolve() == {"A": "1"}
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, _, _ = cli(["secret", "delete", "keep"], capsys)
    assert code == 0
    code, _, _ = cli(["secret", "delete", "keep", "-y", "--allow-missing"], capsys)
    assert code == 0
