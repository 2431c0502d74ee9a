"""`modal volume` and `modal nfs` as a user runs them (subprocesses; no Ray is started)."""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path

from tests.e2e.conftest import modal_cli


def _tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "empty").write_bytes(b"")
    (root / "sub" / "a.txt").write_text("hello\n")
    (root / "sub" / "deep" / "nul.bin").write_bytes(b"x\x00y\xff")
    (root / "spaces in name.txt").write_text("s")


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert (cmp.left_only, cmp.right_only, cmp.funny_files) == ([], [], []), (a, b)
    for name in cmp.common_files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for sub in cmp.common_dirs:
        _same_tree(a / sub, b / sub)


def _store_snapshot(env: dict[str, str]) -> list[tuple[str, int]]:
    root = Path(env["MODAL_RAY_STATE"]) / "volumes"
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_directory_tree_round_trips_byte_for_byte(cli_env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    created = modal_cli("volume", "create", "cli-vol", env=cli_env)
    assert created.returncode == 0, created.stderr
    assert "Created Volume 'cli-vol' in environment 'main'." in created.stdout

    put = modal_cli("volume", "put", "cli-vol", str(src), "/data", env=cli_env)
    assert put.returncode == 0, put.stderr
    got = modal_cli("volume", "get", "cli-vol", "/data", str(tmp_path / "out"), env=cli_env)
    assert got.returncode == 0, got.stderr
    _same_tree(src, tmp_path / "out")

    listing = modal_cli("volume", "ls", "cli-vol", "data", "--json", env=cli_env)
    assert listing.returncode == 0, listing.stderr
    rows = {row["Filename"]: row for row in json.loads(listing.stdout)}
    assert rows["data/sub"]["Type"] == "dir"
    assert rows["data/big.bin"]["Type"] == "file"
    plain = modal_cli("volume", "ls", "cli-vol", env=cli_env)  # not a tty: one path a line
    assert plain.stdout.splitlines() == ["data"]

    stdout = modal_cli("volume", "get", "cli-vol", "data/sub/a.txt", "-", env=cli_env)
    assert stdout.returncode == 0
    assert stdout.stdout == "hello\n"

    volumes = modal_cli("volume", "list", "--json", env=cli_env)
    assert [v["Name"] for v in json.loads(volumes.stdout)] == ["cli-vol"]


def test_put_needs_force_to_overwrite(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("one")
    assert modal_cli("volume", "create", "cli-force", env=cli_env).returncode == 0
    assert modal_cli("volume", "put", "cli-force", str(f), "/dir/", env=cli_env).returncode == 0
    f.write_text("two")
    again = modal_cli("volume", "put", "cli-force", str(f), "/dir/", env=cli_env)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "Error: /dir/f.txt: already exists (use force=True or `--force` to overwrite)"
    ]
    forced = modal_cli("volume", "put", "cli-force", str(f), "/dir/", "-f", env=cli_env)
    assert forced.returncode == 0, forced.stderr
    out = modal_cli("volume", "get", "cli-force", "dir/f.txt", "-", env=cli_env)
    assert out.stdout == "two"


def test_path_traversal_through_the_cli_is_refused(cli_env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    f = tmp_path / "f.txt"
    f.write_text("payload")
    assert modal_cli("volume", "create", "cli-safe", env=cli_env).returncode == 0
    assert (
        modal_cli("volume", "put", "cli-safe", str(f), "/inside.txt", env=cli_env).returncode == 0
    )
    before = _store_snapshot(cli_env)
    escape = "../" * 12 + os.path.relpath(secret, "/")
    attempts = [
        ("volume", "get", "cli-safe", escape, str(tmp_path / "stolen")),
        ("volume", "get", "cli-safe", escape, "-"),
        ("volume", "put", "cli-safe", str(f), "../../escaped.txt"),
        ("volume", "rm", "cli-safe", "../inside.txt"),
        ("volume", "cp", "cli-safe", "inside.txt", "../../../out.txt"),
        ("volume", "ls", "cli-safe", "/../.."),
    ]
    for args in attempts:
        result = modal_cli(*args, env=cli_env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, lines)
        assert lines[0].startswith("Error: Invalid volume"), (args, lines)
        assert "outside the volume" in lines[0]
        assert result.stdout == ""
    assert _store_snapshot(cli_env) == before
    assert not (tmp_path / "stolen").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "modal-ray-state", "secret.txt"]


def test_file_operations_and_management(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert modal_cli("volume", "create", "cli-ops", env=cli_env).returncode == 0
    assert modal_cli("volume", "put", "cli-ops", str(f), "/a/f.txt", env=cli_env).returncode == 0
    assert modal_cli("volume", "cp", "cli-ops", "a/f.txt", "b.txt", env=cli_env).returncode == 0
    no_r = modal_cli("volume", "rm", "cli-ops", "a", env=cli_env)
    assert no_r.returncode == 1
    assert "recursive" in no_r.stderr
    assert modal_cli("volume", "rm", "cli-ops", "a", "-r", env=cli_env).returncode == 0
    assert modal_cli("volume", "ls", "cli-ops", env=cli_env).stdout.splitlines() == ["b.txt"]
    unconfirmed = modal_cli("volume", "delete", "cli-ops", env=cli_env)
    assert unconfirmed.returncode == 1
    assert "--yes" in unconfirmed.stderr
    renamed = modal_cli("volume", "rename", "cli-ops", "cli-ops2", "-y", env=cli_env)
    assert renamed.returncode == 0, renamed.stderr
    assert modal_cli("volume", "delete", "cli-ops2", "-y", env=cli_env).returncode == 0
    missing = modal_cli("volume", "ls", "cli-ops2", env=cli_env)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    allowed = modal_cli("volume", "delete", "cli-ops2", "-y", "--allow-missing", env=cli_env)
    assert allowed.returncode == 0, allowed.stderr


def test_nfs_legacy_alias(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("nfs data")
    assert modal_cli("nfs", "create", "cli-nfs", env=cli_env).returncode == 0
    assert modal_cli("nfs", "put", "cli-nfs", str(f), "/d/", env=cli_env).returncode == 0
    assert modal_cli("nfs", "ls", "cli-nfs", "d", env=cli_env).stdout.splitlines() == ["d/n.txt"]
    assert modal_cli("nfs", "get", "cli-nfs", "d/n.txt", "-", env=cli_env).stdout == "nfs data"
    escape = modal_cli("nfs", "get", "cli-nfs", "../../etc/passwd", "-", env=cli_env)
    assert escape.returncode == 1
    assert "outside the volume" in escape.stderr
    assert modal_cli("nfs", "rm", "cli-nfs", "d", "-r", env=cli_env).returncode == 0
    assert modal_cli("nfs", "delete", "cli-nfs", "-y", env=cli_env).returncode == 0
