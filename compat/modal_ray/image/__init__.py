"""`modal.Image` and its worker-side setup (the public shim is `modal.image`).

- `builder`: the `Image` class, its recorded steps and their compilation to a Ray runtime_env;
- `sources`: source discovery on the driver (requirements files, pyproject.toml, module paths);
- `packing`: deterministic zips of local files and directories, `ignore=` matching;
- `setup`: `ImageSetup`, what runs in the worker before each input (files, `run_function`,
  `workdir`, package check).
"""

from .builder import AUTO_DOCKERIGNORE, Image, default_image
from .setup import ImageSetup

__all__ = ["AUTO_DOCKERIGNORE", "Image", "ImageSetup", "default_image"]
