"""`modal.file_pattern_matcher`: dockerignore-style matchers (implementation in `modal_ray`)."""

from modal_ray.file_pattern_matcher import NON_PYTHON_FILES, FilePatternMatcher

__all__ = ["NON_PYTHON_FILES", "FilePatternMatcher"]
