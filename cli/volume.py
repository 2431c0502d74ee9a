"""`modal volume create|list|ls|put|get|rm|cp|rename|delete|dashboard`: Volumes and their files.

Thin over `modal.Volume`; the store is reached directly (`MODAL_RAY_VOLUMES` or the state
store), so nothing here starts Ray. Every remote path is checked by the SDK: a path that would
leave the volume's root is refused with a one-line error and nothing is written.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any

import typer

from modal.exception import InvalidError, NotFoundError
from modal_ray import config

from .utils import ENV_HELP, display_table

volume_cli = typer.Typer(
    name="volume",
    help="Read and edit `modal.Volume` volumes.\n\nNote: users of `modal.NetworkFileSystem`"
    " should use the `modal nfs` command instead.",
    no_args_is_help=True,
    add_completion=False,
)

_TYPES = {1: "file", 2: "dir", 3: "link", 4: "fifo", 5: "socket"}


def humanize_filesize(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} ZiB"


def _when(ts: float | datetime | None, json_output: bool) -> str | None:
    if ts is None:
        return None
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts).astimezone()
    return dt.isoformat() if json_output else dt.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def confirm(question: str) -> None:
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:  # stdin closed or not answerable
        raise InvalidError(
            "No confirmation was given. Pass `--yes` to skip the question."
        ) from None
    if not confirmed:
        raise typer.Abort()


def _volume(name: str, env: str | None) -> Any:
    import modal

    vol = modal.Volume.from_name(name, environment_name=config.environment_name(env))
    vol.hydrate()
    return vol


@volume_cli.command("create", help="Create a named, persistent modal.Volume.", no_args_is_help=True)
def create(
    name: str = typer.Argument(..., metavar="NAME", show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    version: int | None = typer.Option(None, "--version", help="VolumeFS version. (Experimental)"),
) -> None:
    import modal

    environment = config.environment_name(env)
    modal.Volume.objects.create(name, environment_name=environment, version=version)
    print(f"Created Volume '{name}' in environment '{environment}'.\n\nCode example:\n")
    print(f'@app.function(volumes={{"/my_vol": modal.Volume.from_name("{name}")}})')
    print('def some_func():\n    os.listdir("/my_vol")')


@volume_cli.command("list", help="List the details of all modal.Volume volumes in an Environment.")
def list_(
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json/--no-json"),
) -> None:
    import modal

    environment = config.environment_name(env)
    rows = []
    for vol in modal.Volume.objects.list(environment_name=environment):
        info = vol.info()
        rows.append([info.name, _when(info.created_at, json), info.created_by])
    title = (
        "Volumes" if environment == config.DEFAULT_ENVIRONMENT else f"Volumes in {environment!r}"
    )
    display_table(["Name", "Created at", "Created by"], rows, json_output=json, title=title)


@volume_cli.command(
    "ls", help="List files and directories in a modal.Volume volume.", no_args_is_help=True
)
def ls(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    path: str = typer.Argument("/", metavar="[PATH]"),
    json: bool = typer.Option(False, "--json/--no-json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    entries = _volume(volume_name, env).listdir(path)
    if not json and not sys.stdout.isatty():
        for entry in entries:
            print(entry.path)
        return
    rows = [
        [
            entry.path.encode("unicode_escape").decode("utf-8"),
            _TYPES.get(int(entry.type), "file"),
            _when(entry.mtime, json),
            humanize_filesize(entry.size),
        ]
        for entry in entries
    ]
    display_table(
        ["Filename", "Type", "Created/Modified", "Size"],
        rows,
        json_output=json,
        title=f"Directory listing of '{path}' in '{volume_name}'",
    )


@volume_cli.command(
    "put", help="Upload a file or directory to a modal.Volume.", no_args_is_help=True
)
def put(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    local_path: str = typer.Argument(..., metavar="LOCAL_PATH", show_default=False),
    remote_path: str = typer.Argument("/", metavar="[REMOTE_PATH]"),
    force: bool = typer.Option(False, "-f", "--force", help="Overwrite existing files."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Upload a file or directory to a modal.Volume.

    Remote parent directories will be created as needed. Ending the REMOTE_PATH with a forward
    slash (/), it's assumed to be a directory and the file will be uploaded with its current
    name under that directory.
    """
    vol = _volume(volume_name, env)
    if remote_path.endswith("/"):
        remote_path = remote_path + os.path.basename(local_path.rstrip("/"))
    if "*" in local_path:
        raise InvalidError("Glob uploads are currently not supported")
    if not os.path.exists(local_path):
        raise InvalidError(f"Local path '{local_path}' does not exist.")
    try:
        with vol.batch_upload(force=force) as batch:
            if os.path.isdir(local_path):
                batch.put_directory(local_path, remote_path)
            else:
                batch.put_file(local_path, remote_path)
    except FileExistsError as exc:
        raise InvalidError(f"{exc}") from None
    kind = "directory" if os.path.isdir(local_path) else "file"
    print(f"Uploaded {kind} '{local_path}' to '{remote_path}'", file=sys.stderr)


@volume_cli.command("get", help="Download files from a modal.Volume object.", no_args_is_help=True)
def get(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    remote_path: str = typer.Argument(..., metavar="REMOTE_PATH", show_default=False),
    local_destination: str = typer.Argument(".", metavar="[LOCAL_DESTINATION]"),
    force: bool = typer.Option(False, "--force/--no-force"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Download files from a modal.Volume object.

    If a folder is passed for REMOTE_PATH, the contents of the folder will be downloaded
    recursively, including all subdirectories. Use "-" as LOCAL_DESTINATION to write file
    contents to standard output.
    """
    from modal_ray.volumes import download, ops, paths

    vol = _volume(volume_name, env)
    meta = vol._resolve()
    store = vol._store_obj()
    remote = paths.volume_path(remote_path, what="remote path")
    manifest = store.latest(meta.id)
    real, entry = manifest.resolve(remote)
    if entry is None:
        raise NotFoundError(f"No such file or directory: /{remote} in volume '{volume_name}'")
    is_dir = entry.kind == "d"
    found = list(manifest.under(real, recursive=True)) if is_dir else [(real, entry)]
    items = [
        download.Item(remote + p[len(real) :] if is_dir else remote, e.kind, e.ref)
        for p, e in found
    ]
    refs = {it.path: e for it, (_p, e) in zip(items, found, strict=True)}

    def read(path: str) -> Any:
        return ops.read_chunks(store, meta, refs[path])

    count = download.download(items, remote, is_dir, local_destination, force=force, read=read)
    if local_destination != "-":
        print(f"Downloaded {count} file(s) to '{local_destination}'", file=sys.stderr)


@volume_cli.command(
    "rm", help="Delete a file or directory from a modal.Volume.", no_args_is_help=True
)
def rm(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    remote_path: str = typer.Argument(..., metavar="REMOTE_PATH", show_default=False),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Delete directory recursively"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    _volume(volume_name, env).remove_file(remote_path, recursive=recursive)
    print(f"{remote_path} was deleted successfully!", file=sys.stderr)


@volume_cli.command(
    "cp",
    help="Copy within a modal.Volume. Copy source file to destination file or multiple source"
    " files to destination directory.",
    no_args_is_help=True,
)
def cp(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    paths_: list[str] = typer.Argument(..., metavar="PATHS...", show_default=False),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Copy directories recursively"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    if len(paths_) < 2:
        raise InvalidError("`modal volume cp` needs at least one source and a destination path.")
    *src_paths, dst_path = paths_
    _volume(volume_name, env).copy_files(src_paths, dst_path, recursive)


@volume_cli.command(
    "delete", help="Delete a named Volume and all of its data.", no_args_is_help=True
)
def delete(
    name: str = typer.Argument(
        ..., metavar="NAME", help="Name of the modal.Volume to be deleted. Case sensitive"
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Don't error if the Volume doesn't exist."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    environment = config.environment_name(env)
    if not yes:
        confirm(f"Are you sure you want to irrevocably delete the modal.Volume '{name}'?")
    modal.Volume.objects.delete(name, environment_name=environment, allow_missing=allow_missing)
    print(f"Deleted Volume '{name}' from environment '{environment}'.", file=sys.stderr)


@volume_cli.command("rename", help="Rename a modal.Volume.", no_args_is_help=True)
def rename(
    old_name: str = typer.Argument(..., metavar="OLD_NAME", show_default=False),
    new_name: str = typer.Argument(..., metavar="NEW_NAME", show_default=False),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    if not yes:
        confirm(
            f"Are you sure you want rename the modal.Volume '{old_name}'? This may break any Apps"
            " currently using it."
        )
    modal.Volume.rename(old_name, new_name, environment_name=config.environment_name(env))
    print(f"Renamed Volume '{old_name}' to '{new_name}'.", file=sys.stderr)


@volume_cli.command(
    "dashboard", help="Open the Volume's dashboard page in your web browser.", no_args_is_help=True
)
def dashboard(
    volume_name: str = typer.Argument(..., metavar="VOLUME_NAME", show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    vol = _volume(volume_name, env)
    store = vol._store_obj()
    print(
        f"There is no dashboard on Ray. Volume '{volume_name}' ({vol.object_id}) is stored in"
        f" {store.cfg.url}; use `modal volume ls {volume_name}` to browse it."
    )
