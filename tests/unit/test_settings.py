"""One settings object: every variable modal-ray reads is declared in `modal_ray.settings`,
documented once in docs/operations.md, validated with `InvalidError`; declared dependencies are
all used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from modal_ray import config, settings
from modal_ray.exception import InvalidError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("compat", "backends", "cli", "volumes", "serve_adapters")
# Variables of Modal and Ray that modal-ray also reads; every other one is `MODAL_RAY_*`.
FOREIGN = {"RAY_ADDRESS", "MODAL_ENVIRONMENT", "MODAL_TRACEBACK"}
# Storage is being moved onto the settings object in its own change (issue 9, item 4).
PENDING_READERS = {"compat/modal_ray/storage/__init__.py"}


def _sources() -> list[Path]:
    return [p for folder in SHIPPED for p in sorted((ROOT / folder).rglob("*.py"))]


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in settings.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_every_variable_in_the_code_is_a_setting_or_internal() -> None:
    known = set(settings.ENV_NAMES) | set(config.INTERNAL_ENV)
    unknown = {}
    for path in _sources():
        for name in re.findall(r"\bMODAL_RAY_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            if name not in known:
                unknown.setdefault(name, str(path.relative_to(ROOT)))
    assert not unknown, f"variables that are neither settings nor internal: {unknown}"
    assert not set(settings.ENV_NAMES) & set(config.INTERNAL_ENV)
    assert all(n.startswith("MODAL_RAY_") or n in FOREIGN for n in settings.ENV_NAMES)


def test_only_the_settings_module_reads_settings_from_the_environment() -> None:
    names = "|".join(map(re.escape, settings.ENV_NAMES))
    read = re.compile(
        rf"""(?:environ\.get|getenv|environ\.setdefault)\(\s*["']({names})["']"""
        rf"""|environ\[\s*["']({names})["']\s*\](?!\s*=[^=])"""
    )
    offenders = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        if rel in PENDING_READERS or path.name == "settings.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if read.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, offenders


def _configuration_rows(text: str) -> list[str]:
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_docs_list_every_setting_once() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    documented: list[str] = []
    for row in _configuration_rows(text):
        first_cell = row.split("|")[1]
        documented += re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell)
    assert sorted(documented) == sorted(set(documented)), "a variable is listed twice"
    assert set(documented) == set(settings.ENV_NAMES)
    # No second table elsewhere in the page re-lists a setting.
    other_rows = [
        line
        for line in text.splitlines()
        if line.startswith("| `") and line not in _configuration_rows(text)
    ]
    for row in other_rows:
        assert not set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])) & set(
            settings.ENV_NAMES
        ), row
    for name in config.INTERNAL_ENV:
        assert name in text


def test_every_setting_has_a_docstring() -> None:
    for name, field in settings.Settings.model_fields.items():
        assert field.description, name
        assert len(field.description) > 20, name


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    s = config.settings()
    assert (s.address, s.connect_timeout, s.environment, s.packages) == (
        None,
        30.0,
        "main",
        "install",
    )
    assert (s.check_feasible, s.ship_source, s.traceback, s.worker_fs) == (
        True,
        None,
        False,
        "shared",
    )
    assert (s.volume_fd, s.volume_idle_s, s.cbm_mode) == (1021, 60, "auto")
    assert s.cbm_max_bytes == 50 << 30
    assert config.state_root() == Path.home() / ".modal-ray"
    # Changes made in the process are seen by the next read (tests, a worker's `env=`).
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("MODAL_RAY_ADDRESS", "")  # empty counts as unset
    assert config.ray_address() == "10.0.0.1:6379"
    monkeypatch.setenv("MODAL_RAY_ADDRESS", "ray://head:10001")
    assert config.ray_address() == "ray://head:10001"
    monkeypatch.setenv("MODAL_RAY_PACKAGES", " Check ")
    monkeypatch.setenv("MODAL_RAY_SHIP_SOURCE", "0")
    monkeypatch.setenv("MODAL_RAY_STATE", "~/elsewhere")
    monkeypatch.setenv("MODAL_RAY_VOLUMES_OPTIONS", '{"endpoint_url": "http://x:9000"}')
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    monkeypatch.setenv("MODAL_RAY_NUM_CPUS", "4")
    assert config.packages_mode() == "check"
    assert config.ship_source() is False
    assert config.state_root() == Path.home() / "elsewhere"
    assert config.settings().volumes_options == {"endpoint_url": "http://x:9000"}
    assert config.environment_name() == "dev"
    assert config.environment_name("prod") == "prod"
    assert config.embedded_num_cpus() == 4.0
    with pytest.raises(InvalidError, match="Invalid environment name"):
        config.environment_name("no spaces")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODAL_RAY_CONNECT_TIMEOUT", "soon"),
        ("MODAL_RAY_CONNECT_TIMEOUT", "0"),
        ("MODAL_RAY_CONNECT_TIMEOUT", "inf"),
        ("MODAL_ENVIRONMENT", "has spaces"),
        ("MODAL_RAY_NUM_CPUS", "-1"),
        ("MODAL_RAY_NUM_GPUS", "one"),
        ("MODAL_RAY_PACKAGES", "maybe"),
        ("MODAL_RAY_CHECK_FEASIBLE", "perhaps"),
        ("MODAL_RAY_SHIP_SOURCE", "2"),
        ("MODAL_RAY_WORKER_FS", "bogus"),
        ("MODAL_TRACEBACK", "loud"),
        ("MODAL_RAY_STORE_SYNC", "always"),
        ("MODAL_RAY_DICT_TTL", "-5"),
        ("MODAL_RAY_VOLUMES_OPTIONS", "{not json"),
        ("MODAL_RAY_VOLUMES_OPTIONS", "[1, 2]"),
        ("MODAL_RAY_VOLUME_FD", "2"),
        ("MODAL_RAY_VOLUME_FD", "1.5"),
        ("MODAL_RAY_VOLUME_IDLE_S", "never"),
        ("MODAL_RAY_CBM_MODE", "nfs"),
        ("MODAL_RAY_CBM_MAX_BYTES", "0"),
    ],
)
def test_a_bad_value_is_an_invalid_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidError) as info:
        config.settings()
    assert f"{name} must be " in str(info.value)
    assert repr(value) in str(info.value)
    monkeypatch.delenv(name)
    config.settings()  # fixed: the next read succeeds


def test_import_modal_does_not_load_pydantic_settings() -> None:
    check = "import sys, modal; print('pydantic_settings' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-P", "-c", check],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# Distribution name -> the module it provides, where the two differ.
_MODULE_OF = {"python-dotenv": "dotenv", "typing-extensions": "typing_extensions"}
# Declared for the users' code on the workers, never imported by modal-ray itself.
_FOR_USER_CODE = {"python-multipart"}  # FastAPI forms in web functions


def test_declared_dependencies_are_all_imported() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    code = "\n".join(p.read_text() for p in _sources())
    unused = []
    for dep in deps:
        dist = re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower()
        if dist in _FOR_USER_CODE:
            continue
        module = _MODULE_OF.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(?:import|from)\s+{module}\b", code, re.MULTILINE):
            unused.append(dist)
    assert not unused, f"declared but never imported: {unused}"


def test_showing_an_error_never_fails_on_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("MODAL_TRACEBACK", "1")
    assert config.show_traceback() is True
    monkeypatch.setenv("MODAL_RAY_CONNECT_TIMEOUT", "soon")
    with pytest.raises(InvalidError):
        config.connect_timeout()
    assert config.show_traceback() is False  # the CLI then prints that InvalidError in one line
