"""Minimal pure-Python wheels made on the spot, for installer tests without a package index."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, str] | None = None,
    requires: list[str] | tuple[str, ...] = (),
    extra: str = "",
) -> None:
    """Write `<name>-<version>-py3-none-any.whl` into `folder`: `files` (default: an empty
    package `<name>/__init__.py`) plus metadata requiring `requires` (`extra` is appended to
    METADATA)."""
    stem = name.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires) + extra
    contents = {
        **(files if files is not None else {f"{stem}/__init__.py": ""}),
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(folder / f"{stem}-{version}-py3-none-any.whl", "w") as zf:
        for path, text in contents.items():
            zf.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{path},sha256={digest.rstrip(b'=').decode()},{len(text.encode())}")
        zf.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
