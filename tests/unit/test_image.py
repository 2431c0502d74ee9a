"""`modal.Image` -> runtime_env + worker setup step, and `FilePatternMatcher` (no Ray)."""

from __future__ import annotations

import inspect
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import modal_ray.host_files as host_files
import modal_ray.image.packing as packing
import modal_ray.image.setup as image_setup
from modal.exception import ImageBuildError, InvalidError, ModuleNotMountable
from modal.file_pattern_matcher import NON_PYTHON_FILES, FilePatternMatcher
from modal.image import Image
from modal_ray.image import ImageSetup, default_image
from modal_ray.image.runtime_requirements import runtime_requirements
from modal_ray.warn import reset_for_tests

# A copy of the real client's public surface (shared/modal-api-surface.json), kept with the tests.
SURFACE = Path(__file__).resolve().parents[1] / "data" / "modal-api-surface.json"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reset_for_tests()
    monkeypatch.delenv("MODAL_RAY_PACKAGES", raising=False)
    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    monkeypatch.setattr(image_setup, "_workdirs", {})
    monkeypatch.setattr(image_setup, "_cache_dir", lambda: tmp_path / "node-cache")
    monkeypatch.setattr(host_files, "_ledger_dir", lambda: str(tmp_path / "ledger"))
    monkeypatch.delenv("MODAL_RAY_APP_ID", raising=False)
    monkeypatch.delenv("MODAL_RAY_WORKER_FS", raising=False)


@pytest.fixture
def restore_cwd() -> Iterator[None]:
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def _no_warnings(fn: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn()  # type: ignore[operator]


def _own(installer: dict[str, Any]) -> list[str]:
    """The image's own packages: the list minus the worker runtime's lines that follow them."""
    packages: list[str] = installer["packages"]
    lines = runtime_requirements()
    assert tuple(packages[len(packages) - len(lines) :]) == lines
    return packages[: len(packages) - len(lines)]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


# -- the chain -----------------------------------------------------------------------------


def test_chain_is_immutable_and_ids_are_deterministic() -> None:
    base = Image.debian_slim()
    with_pkg = base.pip_install("requests")
    assert with_pkg is not base
    assert base._runtime_env() == {}
    assert _own(with_pkg._runtime_env()["pip"]) == ["requests"]
    assert base.object_id != with_pkg.object_id
    assert with_pkg.object_id == Image.debian_slim().pip_install("requests").object_id
    assert with_pkg.object_id.startswith("im-")
    assert default_image().object_id == base.object_id
    assert base.pip_install() is base  # nothing to add
    assert Image.from_id(with_pkg.object_id) is with_pkg
    assert with_pkg.hydrate() is with_pkg
    assert base._worker_setup() is None


def test_no_constructor_and_removed_names() -> None:
    with pytest.raises(InvalidError, match="debian_slim"):
        Image()
    with pytest.raises(AttributeError, match="micromamba"):
        Image.conda()  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="add_local_dir"):
        Image.debian_slim().copy_mount  # type: ignore[attr-defined]  # noqa: B018


def test_async_variants_exist() -> None:
    image = Image.debian_slim()
    for name in ("build", "hydrate", "publish", "get_dashboard_url"):
        assert callable(getattr(image, name).aio)
    assert callable(Image.from_id.aio)


def test_matches_modal_surface() -> None:
    kinds = {
        "pos_or_kw": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "kw_only": inspect.Parameter.KEYWORD_ONLY,
        "var_pos": inspect.Parameter.VAR_POSITIONAL,
        "var_kw": inspect.Parameter.VAR_KEYWORD,
    }
    names = json.loads(SURFACE.read_text())["modules"]["modal"]["names"]
    for cls in (Image, FilePatternMatcher):
        for name, member in names[cls.__name__]["members"].items():
            assert inspect.getattr_static(cls, name, None) is not None, name
            if "params" not in member:
                continue
            fn = getattr(cls, name)
            fn = getattr(fn, "__wrapped__", fn)
            params = inspect.signature(fn).parameters.values()
            got = [(p.name, p.kind) for p in params if p.name not in ("self", "cls")]
            assert got == [(p["name"], kinds[p["kind"]]) for p in member["params"]], name


# -- packages ------------------------------------------------------------------------------


def test_pip_steps_merge_in_order_with_options() -> None:
    image = (
        Image.debian_slim()
        .pip_install("numpy", ["pandas>=2", "scipy"])
        .pip_install("flash-attn", extra_options="--no-build-isolation", index_url="https://i")
    )
    pip = image._runtime_env()["pip"]
    assert _own(pip) == ["numpy", "pandas>=2", "scipy", "flash-attn"]
    assert pip["pip_install_options"] == [
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--index-url",
        "https://i",
        "--no-build-isolation",
    ]
    with pytest.warns(UserWarning, match="different install options"):
        image._emit_warnings()


def test_uv_pip_install() -> None:
    image = Image.debian_slim().uv_pip_install("torch==2.7.1", pre=True, uv_version="0.8.0")
    assert image._runtime_env()["uv"] == {
        "packages": ["torch==2.7.1", *runtime_requirements()],
        "uv_pip_install_options": ["--no-cache", "--prerelease=allow"],
        "uv_version": "==0.8.0",
    }
    mixed = Image.debian_slim().pip_install("a").uv_pip_install("b")
    env = mixed._runtime_env()
    assert "pip" not in env  # a runtime_env holds only one of pip/uv
    assert _own(env["uv"]) == ["a", "b"]


@pytest.mark.parametrize("flag", ["--upgrade", "-U"])
def test_flags_in_package_list_are_rejected(flag: str) -> None:
    with pytest.raises(InvalidError, match="extra_options"):
        Image.debian_slim().pip_install("numpy", flag)
    with pytest.raises(InvalidError, match="extra_options"):
        Image.debian_slim().uv_pip_install(flag)


def test_non_string_packages_are_rejected() -> None:
    with pytest.raises(InvalidError):
        Image.debian_slim().pip_install(3)  # type: ignore[arg-type]


def test_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("click==8.1.7\n")
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# comment\n"
        "httpx~=0.27  # inline comment\n"
        "-r base.txt\n"
        "\n"
        "--extra-index-url https://extra\n"
        "rich \\\n"
        "  >=13\n"
    )
    env = Image.debian_slim().pip_install_from_requirements(str(req))._runtime_env()
    assert _own(env["pip"]) == [
        "httpx~=0.27",
        "click==8.1.7",
        "--extra-index-url https://extra",
        "rich   >=13",
    ]
    uv = Image.debian_slim().uv_pip_install(requirements=[str(tmp_path / "base.txt")])
    assert _own(uv._runtime_env()["uv"]) == ["click==8.1.7"]
    with pytest.raises(FileNotFoundError):
        Image.debian_slim().pip_install_from_requirements(str(tmp_path / "missing.txt"))


def test_pyproject_dependencies(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["httpx>=0.27"]\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\ndocs = ["mkdocs"]\n'
        '[dependency-groups]\ndev = ["ruff", {include-group = "lint"}]\nlint = ["mypy"]\n'
    )
    image = Image.debian_slim().pip_install_from_pyproject(str(pyproject), ["test"])
    assert _own(image._runtime_env()["pip"]) == ["httpx>=0.27", "pytest"]
    synced = Image.debian_slim().uv_sync(str(tmp_path), groups=["dev"], extras=["docs"])
    assert _own(synced._runtime_env()["uv"]) == ["httpx>=0.27", "mkdocs", "ruff", "mypy"]
    (tmp_path / "poetry.toml").write_text('[tool.poetry.dependencies]\npython = "^3.11"\n')
    with pytest.raises(InvalidError, match="poetry_install_from_file"):
        Image.debian_slim().pip_install_from_pyproject(str(tmp_path / "poetry.toml"))


def test_check_mode_emits_no_pip_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_RAY_PACKAGES", "check")
    ok = Image.debian_slim().pip_install("packaging>=20", "pytest", 'nothere; python_version < "3"')
    assert "pip" not in ok._runtime_env()
    setup = ok._worker_setup()
    assert isinstance(setup, ImageSetup)
    setup.apply()
    missing = Image.debian_slim().pip_install("surely-not-installed-pkg", "packaging<1")
    setup = missing._worker_setup()
    assert setup is not None
    with pytest.raises(ImageBuildError, match="surely-not-installed-pkg") as info:
        setup.apply()
    assert "packaging<1 (found" in str(info.value)


# -- env, workdir, imports -----------------------------------------------------------------


def test_env() -> None:
    image = Image.debian_slim().env({"A": "1", "B": "2"}).env({"B": "3"})
    assert image._runtime_env()["env_vars"] == {"A": "1", "B": "3"}
    with pytest.raises(InvalidError, match="str"):
        Image.debian_slim().env({"A": 1})  # type: ignore[dict-item]


def test_workdir_chdirs_before_each_input(tmp_path: Path, restore_cwd: object) -> None:
    target = tmp_path / "app" / "work"
    setup = Image.debian_slim().workdir(str(target))._worker_setup()
    assert setup is not None
    setup = cloudpickle.loads(cloudpickle.dumps(setup))
    setup.apply()
    assert Path.cwd() == target
    os.chdir(tmp_path)
    setup.apply()  # cached, but still changes directory for every input
    assert Path.cwd() == target


def test_imports_swallows_import_error_only_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.debian_slim()
    with image.imports():
        import surely_not_an_installed_module
    with pytest.raises(ValueError), image.imports():
        raise ValueError("not an import error")
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    with pytest.raises(ImportError), image.imports():
        import surely_not_an_installed_module  # noqa: F401


# -- local files and code ------------------------------------------------------------------


def test_add_local_dir_with_ignore_patterns(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(
        src,
        {
            "a.txt": "alpha",
            "keep.txt": "kept",
            "mod.py": "x = 1",
            "mod.pyc": "bytecode",
            "pkg/__pycache__/mod.cpython.pyc": "cache",
            "pkg/inner/data.bin": "\x00\x01",
            "pkg/inner/run.sh": "#!/bin/sh",
        },
    )
    (src / "pkg/inner/run.sh").chmod(0o755)
    dest = tmp_path / "remote"
    image = Image.debian_slim().add_local_dir(
        src, str(dest), ignore=["*.pyc", "**/__pycache__", "*.txt", "!keep.txt"]
    )
    setup = image._worker_setup()
    assert setup is not None
    restored = cloudpickle.loads(cloudpickle.dumps(setup))
    restored.apply()
    expected = {
        k: v
        for k, v in _tree(src).items()
        if k not in ("a.txt", "mod.pyc") and "__pycache__" not in k
    }
    assert _tree(dest) == expected
    assert os.access(dest / "pkg/inner/run.sh", os.X_OK)
    # Deterministic packing: the same files give the same setup key.
    assert image._worker_setup().key == setup.key  # type: ignore[union-attr]


def test_add_local_dir_callable_ignore_and_relative_remote(
    tmp_path: Path, restore_cwd: object
) -> None:
    src = tmp_path / "src"
    _write(src, {"a.py": "a", ".venv/lib.py": "venv", "b/c.md": "c"})
    image = Image.debian_slim().add_local_dir(
        str(src), "data", ignore=lambda p: p.is_relative_to(".venv")
    )
    os.chdir(tmp_path)
    image._worker_setup().apply()  # type: ignore[union-attr]
    assert _tree(tmp_path / "data") == {"a.py": b"a", "b/c.md": b"c"}


def test_add_local_dir_inverted_matcher_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, {"a.py": "a", "b/c.py": "c", "b/d.txt": "d"})
    image = Image.debian_slim().add_local_dir(
        src, str(tmp_path / "out"), ignore=~FilePatternMatcher("**/*.py")
    )
    image._worker_setup().apply()  # type: ignore[union-attr]
    assert sorted(_tree(tmp_path / "out")) == ["a.py", "b/c.py"]
    with pytest.raises(FileNotFoundError):
        Image.debian_slim().add_local_dir(tmp_path / "missing", "/x")
    with pytest.raises(FileNotFoundError):
        Image.debian_slim().add_local_file(tmp_path / "missing.txt", "/x")


def test_add_local_files_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "big", {"a": "x" * 100})
    monkeypatch.setattr(packing, "_MAX_LOCAL_BYTES", 50)
    with pytest.raises(InvalidError, match="Volume"):
        Image.debian_slim().add_local_dir(tmp_path / "big", "/big")._worker_setup()


def test_add_local_file(tmp_path: Path) -> None:
    (tmp_path / "cfg.json").write_text('{"a": 1}')
    out = tmp_path / "out"
    image = (
        Image.debian_slim()
        .add_local_file(tmp_path / "cfg.json", str(out / "renamed.json"))
        .add_local_file(str(tmp_path / "cfg.json"), f"{out}/sub/")
    )
    setup = cloudpickle.loads(cloudpickle.dumps(image._worker_setup()))
    setup.apply()
    assert _tree(out) == {"renamed.json": b'{"a": 1}', "sub/cfg.json": b'{"a": 1}'}


def test_unwritable_remote_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "blocker").write_text("a file, not a directory")
    setup = Image.debian_slim().add_local_file(tmp_path / "f.txt", f"{tmp_path}/blocker/f.txt")
    with pytest.raises(InvalidError, match="remote_path"):
        setup._worker_setup().apply()  # type: ignore[union-attr]


# -- the host's own files (a container is a process of the machine) ------------------------


def _file_image(tmp_path: Path, remote: Path, text: str = "payload") -> ImageSetup:
    (tmp_path / "payload.txt").write_text(text)
    setup = Image.debian_slim().add_local_file(tmp_path / "payload.txt", str(remote))
    return setup._worker_setup()  # type: ignore[return-value]


def _run(monkeypatch: pytest.MonkeyPatch, app_id: str) -> None:
    monkeypatch.setenv("MODAL_RAY_APP_ID", app_id)
    image_setup._workdirs.clear()  # another process of the node, as far as the memo goes


def test_created_files_belong_to_the_run_and_go_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "made" / "deep" / "payload.txt"
    _run(monkeypatch, "ap-one")
    _file_image(tmp_path, target).apply()
    assert target.read_text() == "payload"
    host_files.release_run("ap-other")  # another run's end removes nothing of this one
    assert target.exists()
    host_files.release_run("ap-one")
    assert not (tmp_path / "made").exists()


def test_existing_host_paths_are_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(monkeypatch, "ap-one")
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    with pytest.raises(InvalidError, match="already exists on this machine") as info:
        _file_image(tmp_path, victim).apply()
    assert str(victim) in str(info.value)
    assert "`remote_path`" in str(info.value)
    assert victim.read_text() == "mine"
    same = tmp_path / "same.txt"
    same.write_text("payload")
    _file_image(tmp_path, same).apply()  # already holds these bytes: used as is
    host_files.release_run("ap-one")
    assert same.read_text() == "payload"
    monkeypatch.setenv("MODAL_RAY_WORKER_FS", "private")
    _file_image(tmp_path, victim).apply()
    assert victim.read_text() == "payload"
    monkeypatch.setenv("MODAL_RAY_WORKER_FS", "bogus")
    with pytest.raises(InvalidError, match="shared"):
        host_files.private_worker_fs()


def test_a_file_changed_after_modal_ray_wrote_it_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "payload.txt"
    _run(monkeypatch, "ap-one")
    _file_image(tmp_path, target).apply()
    target.write_text("the user edited it meanwhile")
    host_files.release_run("ap-one")
    assert target.read_text() == "the user edited it meanwhile"


def test_two_runs_share_identical_files_and_refuse_different_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shared" / "payload.txt"
    _run(monkeypatch, "ap-one")
    _file_image(tmp_path, target).apply()
    _run(monkeypatch, "ap-two")
    _file_image(tmp_path, target).apply()
    (tmp_path / "v2").mkdir()
    with pytest.raises(InvalidError, match="another modal-ray run"):
        _file_image(tmp_path / "v2", target, "other bytes").apply()
    host_files.release_run("ap-one")
    assert target.read_text() == "payload"  # the second run still holds it
    host_files.release_run("ap-two")
    assert not (tmp_path / "shared").exists()


def test_claims_of_exited_processes_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose workers on this node all exited (its driver died) holds nothing."""
    target = tmp_path / "orphan" / "payload.txt"
    _run(monkeypatch, "ap-crashed")
    _file_image(tmp_path, target).apply()
    with host_files.ledger() as book:
        assert book is not None
        book.claims["run:ap-crashed"] = [[2**30, ""]]  # no such process
    assert not (tmp_path / "orphan").exists()


def test_workdir_is_made_for_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_cwd: object
) -> None:
    target = tmp_path / "work" / "dir"
    _run(monkeypatch, "ap-one")
    Image.debian_slim().workdir(str(target))._worker_setup().apply()  # type: ignore[union-attr]
    assert Path.cwd() == target
    os.chdir(tmp_path)
    host_files.release_run("ap-one")
    assert not (tmp_path / "work").exists()


def test_copy_local_aliases_warn(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.warns(UserWarning, match="add_local_file"):
        image = Image.debian_slim().copy_local_file(tmp_path / "f.txt", "/f.txt")
    assert image._steps[-1].kind == "add_local_file"


def test_add_local_python_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"mypkg/__init__.py": "", "mypkg/util.py": "", "single_mod.py": ""})
    monkeypatch.syspath_prepend(str(tmp_path))
    image = Image.debian_slim().add_local_python_source("mypkg", "single_mod", "mypkg.util")
    assert image._runtime_env()["py_modules"] == [
        str(tmp_path / "mypkg"),
        str(tmp_path / "single_mod.py"),
    ]
    _no_warnings(image._emit_warnings)
    custom = Image.debian_slim().add_local_python_source("mypkg", ignore=["*.md"])
    with pytest.warns(UserWarning, match="ignore= not applied"):
        custom._emit_warnings()
    with pytest.raises(ModuleNotMountable):
        Image.debian_slim().add_local_python_source("surely_not_a_module_here")
    with pytest.raises(ModuleNotMountable):
        Image.debian_slim().add_local_python_source("sys")  # built in, no source


def test_remote_reimport_skips_local_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    image = (
        Image.debian_slim()
        .add_local_dir("/surely/not/here", "/data")
        .add_local_python_source("surely_not_a_module_here")
        .pip_install_from_requirements("/surely/not/requirements.txt")
    )
    assert image._steps[-1].kind == "pip_install_from_requirements"


def test_run_function_runs_once_per_node(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"

    def build(path: str, text: str) -> None:
        with open(path, "a") as fh:
            fh.write(text + os.environ.get("BUILD_FLAG", ""))

    image = Image.debian_slim().run_function(
        build, args=(str(log),), kwargs={"text": "ran"}, env={"BUILD_FLAG": "!"}
    )
    setup = cloudpickle.loads(cloudpickle.dumps(image._worker_setup()))
    setup.apply()
    image_setup._workdirs.clear()  # as if another worker process on the same node
    setup.apply()
    assert log.read_text() == "ran!"
    assert "BUILD_FLAG" not in os.environ

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(ImageBuildError, match="boom"):
        Image.debian_slim().run_function(broken)._worker_setup().apply()  # type: ignore[union-attr]


# -- warnings for what Ray cannot do -------------------------------------------------------


def test_unsupported_steps_warn_once_naming_the_step() -> None:
    image = (
        Image.from_registry("nvidia/cuda:12.2.0-devel-ubuntu22.04", add_python="3.11")
        .apt_install("ffmpeg")
        .apt_install("git")
        .run_commands("echo hi")
    )
    with pytest.warns(UserWarning, match="cannot run on Ray") as record:
        image._emit_warnings()
    messages = [str(w.message) for w in record]
    assert any("Image.apt_install('ffmpeg') cannot run on Ray" in m for m in messages)
    assert not any("'git'" in m for m in messages)  # once per step kind
    assert any("Image.run_commands('echo hi')" in m for m in messages)
    assert any("Image.from_registry('nvidia/cuda:12.2.0-devel-ubuntu22.04')" in m for m in messages)
    _no_warnings(image._emit_warnings)
    _no_warnings(Image.debian_slim().pip_install("x").env({"A": "b"})._emit_warnings)


def test_python_version_mismatch_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    local = f"{sys.version_info.major}.{sys.version_info.minor}"
    _no_warnings(Image.debian_slim(python_version=local)._emit_warnings)
    with pytest.warns(UserWarning, match="cluster's Python"):
        Image.debian_slim(python_version="3.99")._emit_warnings()
    with pytest.raises(InvalidError):
        Image.debian_slim(python_version="python3")


def test_build_options_without_effect_warn() -> None:
    image = Image.debian_slim().pip_install("x", gpu="any")
    with pytest.warns(UserWarning, match="gpu="):
        image.build()


# -- FilePatternMatcher --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["*.py"], "foo.py", True),
        (["*.py"], "sub/foo.py", False),
        (["**/*.py"], "sub/deeper/foo.py", True),
        (["**/*.py"], "foo.py", True),
        (["**/__pycache__"], "a/b/__pycache__/x.pyc", True),
        (["build"], "build/out/x.o", True),
        (["build"], "src/build", False),
        (["*.txt", "!keep.txt"], "keep.txt", False),
        (["*.txt", "!keep.txt"], "drop.txt", True),
        (["data/**", "!data/keep/**"], "data/keep/a", False),
        (["fo?.md"], "foo.md", True),
        (["[a-c].md"], "b.md", True),
        (["[!a-c].md"], "b.md", False),
        (["/abs/x"], "abs/x", True),
    ],
)
def test_matcher_semantics(patterns: list[str], path: str, expected: bool) -> None:
    assert FilePatternMatcher(*patterns)(Path(path)) is expected


def test_matcher_inversion_file_and_pruning(tmp_path: Path) -> None:
    matcher = FilePatternMatcher("*.py")
    assert matcher(Path("foo.py"))
    assert not (~matcher)(Path("foo.py"))
    assert matcher.can_prune_directories()
    assert not (~matcher).can_prune_directories()
    assert not FilePatternMatcher("a", "!a/b").can_prune_directories()
    assert NON_PYTHON_FILES(Path("x/data.json"))
    assert not NON_PYTHON_FILES(Path("x/mod.py"))
    ignore_file = tmp_path / ".dockerignore"
    ignore_file.write_text("# comment\n\n*.log\n!important.log\n")
    from_file = FilePatternMatcher.from_file(ignore_file)
    assert from_file(Path("debug.log"))
    assert not from_file(Path("important.log"))
    assert [p.pattern for p in from_file.patterns] == ["*.log", "important.log"]
    restored = cloudpickle.loads(cloudpickle.dumps(~from_file))
    assert not restored(Path("debug.log"))
    with pytest.raises(ValueError, match="exclusion"):
        FilePatternMatcher("!")
