"""The node's folder of sandbox roots is swept of supervisors that died with their Ray, and goes
away once empty (an embedded run leaves nothing behind in $TMPDIR)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from modal_ray.sandbox_runtime.owners import (
    OWNER_LOCK,
    SETUP_GRACE_S,
    sandboxes_root,
    sweep_dead_owners,
)
from modal_ray.sandbox_runtime.supervisor import Supervisor


def test_only_dead_supervisors_folders_are_swept(tmp_path: Path) -> None:
    base = str(tmp_path)
    alive = Supervisor(base_dir=base, owner="alive")
    root = sandboxes_root(base)
    # A supervisor killed with its Ray (SIGKILL: no shutdown ran) left its folder behind.
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from modal_ray.sandbox_runtime.supervisor import Supervisor
                s = Supervisor(base_dir={base!r}, owner="killed")
                (s._base / "work").mkdir()
                print("ready", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    assert killed.stdout.readline().strip() == "ready"
    # While it lives, its folder is kept.
    sweep_dead_owners(base)
    assert (root / "killed" / "work").is_dir()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (root / "unlocked").mkdir()  # no lock file: being set up right now, not ours to judge
    # ...unless it has been empty and unlocked for longer than any set-up takes.
    (root / "abandoned").mkdir()
    old = time.time() - 2 * SETUP_GRACE_S
    os.utime(root / "abandoned", (old, old))

    sweep_dead_owners(base)

    assert not (root / "killed").exists()
    assert not (root / "abandoned").exists()
    assert (root / "alive" / OWNER_LOCK).exists()
    assert (root / "unlocked").is_dir()
    # A supervisor that shuts down removes its own folder; an empty root goes with the sweep.
    asyncio.run(alive.shutdown())
    assert not (root / "alive").exists()
    (root / "unlocked").rmdir()
    sweep_dead_owners(base)
    assert not root.exists()
