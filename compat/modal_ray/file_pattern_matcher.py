"""Dockerignore-style path matching: `modal.FilePatternMatcher` and `NON_PYTHON_FILES`.

A matcher is a predicate on a (usually relative, POSIX-style) path: `matcher(Path("a/b.pyc"))`.
Semantics follow `.dockerignore`:

- `*` and `?` match within one path segment, `**` matches any number of segments (`**/x` also
  matches a top-level `x`), `[...]` is a character class and `\\` escapes;
- a path matches a pattern when the path itself, or one of its parent directories, matches it,
  so ignoring a directory ignores everything below it;
- patterns are applied in order and the last one that matches wins; `!pattern` re-includes;
- `~matcher` inverts the predicate (include only what matched).

Invariants: a matcher is immutable once its patterns are read (`from_file` reads lazily, on first
use) and picklable. Directory pruning is only offered when it cannot change the result: no `!`
patterns and no inversion.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePath

__all__ = ["NON_PYTHON_FILES", "FilePatternMatcher"]


@dataclass(frozen=True)
class _Pattern:
    """One cleaned pattern line."""

    pattern: str
    exclusion: bool
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def matches(self, candidates: list[str]) -> bool:
        return any(self.regex.match(c) for c in candidates)


def _translate(pattern: str) -> str:
    """Dockerignore glob -> anchored regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")  # `**/` also matches zero directories
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def _parse(raw: str) -> _Pattern | None:
    line = raw.strip()
    if not line:
        return None
    exclusion = line.startswith("!")
    if exclusion:
        line = line[1:].strip()
        if not line:
            raise ValueError('Illegal exclusion pattern: "!"')
    cleaned = posixpath.normpath(line).lstrip("/") or "."
    return _Pattern(cleaned, exclusion, re.compile(_translate(cleaned)))


class FilePatternMatcher:
    """Allows matching file Path objects against a list of patterns."""

    def __init__(self, *pattern: str) -> None:
        self._raw: tuple[str, ...] | None = pattern
        self._file: Path | None = None
        self._inverted = False
        if pattern:
            _ = self.patterns  # validate eagerly, as Modal does

    @classmethod
    def from_file(cls, file_path: str | Path) -> FilePatternMatcher:
        """Initialize a new FilePatternMatcher instance from a file (read on first use)."""
        matcher = cls()
        matcher._raw = None
        matcher._file = Path(file_path).expanduser()
        return matcher

    @cached_property
    def patterns(self) -> list[_Pattern]:
        if self._raw is not None:
            lines: list[str] = list(self._raw)
        else:
            assert self._file is not None
            lines = [
                ln for ln in self._file.read_text().splitlines() if not ln.lstrip().startswith("#")
            ]
        return [p for p in (_parse(line) for line in lines) if p is not None]

    def can_prune_directories(self) -> bool:
        """True if a matching directory can be skipped without missing any included file."""
        return not self._inverted and not any(p.exclusion for p in self.patterns)

    def _matches(self, path: str) -> bool:
        norm = posixpath.normpath(path)
        if norm == ".":
            return False
        parts = norm.split("/")
        candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        matched = False
        for pat in self.patterns:
            if pat.exclusion == matched and pat.matches(candidates):
                matched = not pat.exclusion
        return matched

    def __call__(self, file_path: Path) -> bool:
        return self._matches(PurePath(file_path).as_posix()) != self._inverted

    def __invert__(self) -> FilePatternMatcher:
        inverted = FilePatternMatcher.__new__(FilePatternMatcher)
        inverted.__dict__.update(self.__dict__)
        inverted._inverted = not self._inverted
        return inverted

    def __repr__(self) -> str:
        inner = (
            f"FilePatternMatcher.from_file({str(self._file)!r})"
            if self._raw is None
            else f"FilePatternMatcher({', '.join(map(repr, self._raw))})"
        )
        return ("~" if self._inverted else "") + inner


FilePatternMatcher.__module__ = "modal.file_pattern_matcher"

# Everything except `.py` files: the default `ignore` of `Image.add_local_python_source`.
NON_PYTHON_FILES = ~FilePatternMatcher("**/*.py")
