"""`modal nfs list|create|ls|put|get|rm|delete`: legacy NetworkFileSystems (hidden, as in Modal).

Thin over `modal.NetworkFileSystem`; nothing here starts Ray. Paths are checked like Volume
paths: nothing outside the file system's root is read or written.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from modal.exception import InvalidError
from modal_ray import config

from .utils import ENV_HELP, display_table
from .volume import _when, confirm, humanize_filesize

nfs_cli = typer.Typer(
    name="nfs",
    help="Read and edit `modal.NetworkFileSystem` file systems.",
    no_args_is_help=True,
    add_completion=False,
)


def _nfs(name: str, env: str | None) -> Any:
    import modal

    nfs = modal.NetworkFileSystem.from_name(name, environment_name=config.environment_name(env))
    nfs.hydrate()
    return nfs


@nfs_cli.command("list", help="List the names of all network file systems.")
def list_(
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json/--no-json"),
) -> None:
    from modal_ray.volume import _store
    from modal_ray.volumes.store import NFS

    environment = config.environment_name(env)
    rows = [[meta.name, _when(meta.created_at, json)] for meta in _store().list(environment, NFS)]
    display_table(["Name", "Created at"], rows, json_output=json, title="Network file systems")


@nfs_cli.command("create", help="Create a named network file system.", no_args_is_help=True)
def create(
    name: str = typer.Argument(..., metavar="NAME", show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    from modal_ray import state
    from modal_ray.volume import _store
    from modal_ray.volumes.store import NFS

    environment = config.environment_name(env)
    state.check_object_name(name, "NetworkFileSystem")
    _store().create(environment, NFS, name)
    print(f"Created NetworkFileSystem '{name}' in environment '{environment}'.")


@nfs_cli.command(
    "ls", help="List files and directories in a network file system.", no_args_is_help=True
)
def ls(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    path: str = typer.Argument("/", metavar="[PATH]"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    entries = _nfs(volume_name, env).listdir(path)
    if not sys.stdout.isatty():
        for entry in entries:
            print(entry.path)
        return
    rows = [
        [
            e.path,
            "dir" if int(e.type) == 2 else "file",
            _when(e.mtime, False),
            humanize_filesize(e.size),
        ]
        for e in entries
    ]
    display_table(
        ["Filename", "Type", "Created/Modified", "Size"],
        rows,
        title=f"Directory listing of '{path}' in '{volume_name}'",
    )


@nfs_cli.command(
    "put", help="Upload a file or directory to a network file system.", no_args_is_help=True
)
def put(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    local_path: str = typer.Argument(..., metavar="LOCAL_PATH", show_default=False),
    remote_path: str = typer.Argument("/", metavar="[REMOTE_PATH]"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    nfs = _nfs(volume_name, env)
    if remote_path.endswith("/"):
        remote_path = remote_path + os.path.basename(local_path.rstrip("/"))
    if os.path.isdir(local_path):
        nfs.add_local_dir(local_path, remote_path)
        print(f"Uploaded directory '{local_path}' to '{remote_path}'", file=sys.stderr)
    elif "*" in local_path:
        raise InvalidError("Glob uploads are currently not supported")
    elif not os.path.exists(local_path):
        raise InvalidError(f"Local path '{local_path}' does not exist.")
    else:
        nfs.add_local_file(local_path, remote_path)
        print(f"Uploaded file '{local_path}' to '{remote_path}'", file=sys.stderr)


@nfs_cli.command("get", help="Download a file from a network file system.", no_args_is_help=True)
def get(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    remote_path: str = typer.Argument(..., metavar="REMOTE_PATH", show_default=False),
    local_destination: str = typer.Argument(".", metavar="[LOCAL_DESTINATION]"),
    force: bool = typer.Option(False, "--force/--no-force"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Download a file from a network file system.

    Specifying a glob pattern (using any `*` or `**` patterns) as the `remote_path` will download
    all matching files, preserving their directory structure. Use "-" as LOCAL_DESTINATION to
    write file contents to standard output.
    """
    from modal_ray.volumes import download, paths

    nfs = _nfs(volume_name, env)
    files = nfs._files()
    if "*" in remote_path:
        entries = nfs.listdir(remote_path)
        items = [download.Item(e.path, "f") for e in entries if int(e.type) == 1]
        base = paths.volume_path(
            remote_path.split("*", 1)[0].rsplit("/", 1)[0]
            if "/" in remote_path.split("*", 1)[0]
            else ""
        )
        count = download.download(
            items, base, True, local_destination, force=force, read=files.read
        )
    else:
        remote = paths.volume_path(remote_path, what="remote path")
        found = files.list(remote, recursive=True)
        is_dir = not (len(found) == 1 and found[0].path == remote and found[0].kind == "f")
        items = [download.Item(e.path, e.kind) for e in found if e.kind in ("f", "d")]
        count = download.download(
            items, remote, is_dir, local_destination, force=force, read=files.read
        )
    if local_destination != "-":
        print(f"Downloaded {count} file(s) to '{local_destination}'", file=sys.stderr)


@nfs_cli.command(
    "rm", help="Delete a file or directory from a network file system.", no_args_is_help=True
)
def rm(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    remote_path: str = typer.Argument(..., metavar="REMOTE_PATH", show_default=False),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Delete directory recursively"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    _nfs(volume_name, env).remove_file(remote_path, recursive=recursive)
    print(f"{remote_path} was deleted successfully!", file=sys.stderr)


@nfs_cli.command(
    "delete", help="Delete a named, persistent modal.NetworkFileSystem.", no_args_is_help=True
)
def delete(
    nfs_name: str = typer.Argument(
        ...,
        metavar="NFS_NAME",
        help="Name of the modal.NetworkFileSystem to be deleted. Case sensitive",
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    environment = config.environment_name(env)
    if not yes:
        confirm(
            f"Are you sure you want to irrevocably delete the modal.NetworkFileSystem '{nfs_name}'?"
        )
    modal.NetworkFileSystem.delete(nfs_name, environment_name=environment)
    print(
        f"Deleted NetworkFileSystem '{nfs_name}' from environment '{environment}'.", file=sys.stderr
    )
