"""One committed version of a volume: a manifest mapping each path to a file, directory or
symlink entry. Pure data and merge logic; no I/O.

A file entry names an immutable blob in the store (so copying a file inside a volume copies no
data). Every ancestor of an entry is a directory entry. Symlink targets are relative and stay
inside the volume; `resolve()` follows them without ever leaving it.

Merging (`Manifest.apply`) is how concurrent writers combine, Modal's rule: last write wins *per
file*. A writer's change set lists the paths it set or deleted relative to what it had; paths it
did not touch keep whatever the latest version has, so two containers writing different files
both keep their files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modal_ray.exception import InvalidError

from . import paths

FILE, DIR, LINK = "f", "d", "l"


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # FILE, DIR or LINK
    size: int = 0
    mtime: float = 0.0  # seconds since the epoch
    mode: int = 0o644  # permission bits
    ref: str = ""  # blob id (files) or target (symlinks)

    def to_json(self) -> list[Any]:
        return [self.kind, self.size, round(self.mtime, 6), self.mode, self.ref]

    @staticmethod
    def from_json(raw: list[Any]) -> Entry:
        kind, size, mtime, mode, ref = raw
        return Entry(kind, int(size), float(mtime), int(mode), str(ref))

    @staticmethod
    def directory(mtime: float | None = None) -> Entry:
        return Entry(DIR, 0, time.time() if mtime is None else mtime, 0o755, "")


Changes = Mapping[str, Entry | None]  # path -> new entry, or None to delete


@dataclass(slots=True)
class Manifest:
    version: int
    entries: dict[str, Entry]
    created_at: float = 0.0

    @staticmethod
    def empty() -> Manifest:
        return Manifest(0, {}, 0.0)

    # -- serialization ---------------------------------------------------------------------

    def dumps(self) -> bytes:
        body = {
            "version": self.version,
            "created_at": self.created_at,
            "entries": {p: e.to_json() for p, e in self.entries.items()},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @staticmethod
    def loads(data: bytes) -> Manifest:
        body = json.loads(data)
        entries = {p: Entry.from_json(e) for p, e in body["entries"].items()}
        return Manifest(int(body["version"]), entries, float(body.get("created_at", 0.0)))

    # -- queries -------------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        if path == "":
            return Entry.directory(self.created_at)
        return self.entries.get(path)

    def blobs(self) -> set[str]:
        return {e.ref for e in self.entries.values() if e.kind == FILE}

    def under(self, path: str, *, recursive: bool) -> Iterator[tuple[str, Entry]]:
        """Entries below directory `path` (children only unless `recursive`), sorted."""
        prefix = path + "/" if path else ""
        for p in sorted(self.entries):
            if not p.startswith(prefix) or p == path:
                continue
            if recursive or "/" not in p[len(prefix) :]:
                yield p, self.entries[p]

    def resolve(self, path: str) -> tuple[str, Entry | None]:
        """Follow symlinks (in any component) inside the volume; `InvalidError` if one points
        outside it. Returns the final path and its entry (None when it does not exist)."""
        hops = 0
        parts = path.split("/") if path else []
        done: list[str] = []
        while parts:
            part = parts.pop(0)
            current = paths.join("/".join(done), part)
            entry = self.entries.get(current)
            if entry is None or entry.kind != LINK:
                done.append(part)
                continue
            hops += 1
            if hops > 40:
                raise InvalidError(f"Too many levels of symbolic links in {path!r}.")
            target = paths.link_target_inside(current, entry.ref)
            if target is None:
                raise InvalidError(
                    f"Refusing to follow {current!r}: it is a symlink to {entry.ref!r}, outside"
                    " the volume."
                )
            # Start again from the root with the target's components (they may hold links too).
            parts = (target.split("/") if target else []) + parts
            done = []
        final = "/".join(done)
        return final, self.get(final)

    def check_parents_are_dirs(self, path: str) -> None:
        """`InvalidError` when an ancestor of `path` exists and is not a directory."""
        for anc in paths.ancestors(path):
            entry = self.entries.get(anc)
            if entry is not None and entry.kind != DIR:
                kind = "a symlink" if entry.kind == LINK else "a file"
                raise InvalidError(f"Cannot write {path!r}: {anc!r} is {kind}, not a directory.")

    # -- merging -------------------------------------------------------------------------------

    def apply(self, changes: Changes, version: int) -> Manifest:
        """A new manifest: this one with `changes` applied (last write wins per path)."""
        entries = dict(self.entries)
        deletes = sorted((p for p, e in changes.items() if e is None), key=_depth, reverse=True)
        sets = sorted(
            ((p, e) for p, e in changes.items() if e is not None), key=lambda x: _depth(x[0])
        )
        for p in deletes:
            entries.pop(p, None)
        for p, e in sets:
            if p == "":
                continue
            for anc in paths.ancestors(p):
                existing = entries.get(anc)
                if existing is None or existing.kind != DIR:
                    # A file or link where a directory is now needed: the newer write wins.
                    _drop_below(entries, anc)
                    entries[anc] = Entry.directory(e.mtime)
            old = entries.get(p)
            if old is not None and old.kind == DIR and e.kind != DIR:
                _drop_below(entries, p)
            entries[p] = e
        # Directories removed by one writer that another writer added files to come back.
        for p in list(entries):
            for anc in paths.ancestors(p):
                if anc not in entries:
                    entries[anc] = Entry.directory()
        if len(entries) > paths.MAX_INODES and len(entries) > len(self.entries):
            raise paths.no_space(len(entries))
        return Manifest(version, entries, time.time())


def _depth(path: str) -> int:
    return path.count("/")


def _drop_below(entries: dict[str, Entry], path: str) -> None:
    prefix = path + "/"
    for p in [p for p in entries if p.startswith(prefix)]:
        del entries[p]
