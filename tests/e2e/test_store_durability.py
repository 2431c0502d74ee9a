"""Dict and Queue contents survive a full Ray shutdown and restart.

A first process (its own embedded Ray, started by modal-ray on first use) writes and exits, which
takes its Ray down with it; a second process with a fresh embedded Ray reads everything back from
the same state store. Two Ray starts: about 10-20 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

WRITER = textwrap.dedent(
    """
    import modal

    d = modal.Dict.from_name("durable-dict", create_if_missing=True)
    d.update({f"k{i}": i for i in range(1000)})
    d["nested"] = {"list": [1, 2, 3], "set": {4, 5}}
    d[("tuple", "key")] = b"bytes"
    d.pop("k999")

    q = modal.Queue.from_name("durable-queue", create_if_missing=True)
    q.put_many(list(range(300)))
    q.put("in a partition", partition="part")
    assert q.get() == 0  # consumed before the restart: must not come back
    d["queue"] = q  # a Modal object inside a Dict survives too
    print("WROTE", flush=True)
    """
)

READER = textwrap.dedent(
    """
    import json
    import modal

    d = modal.Dict.from_name("durable-dict")  # no create_if_missing: it must exist
    q = modal.Queue.from_name("durable-queue")
    out = {
        "len": d.len(),
        "sum": sum(v for k, v in d.items() if isinstance(k, str) and k.startswith("k")),
        "has_k999": "k999" in d,
        "nested": repr(d["nested"]),
        "tuple": d[("tuple", "key")].decode(),
        "queue_total": q.len(total=True),
        "queue_items": q.get_many(1000),
        "partition": q.get(partition="part", block=False),
        "queue_via_dict": d["queue"].len(),
    }
    print("READ " + json.dumps(out), flush=True)
    """
)


def _run(script: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dict_and_queue_survive_ray_restart(cli_env: dict[str, str], tmp_path: Path) -> None:
    cli_env["MODAL_RAY_NUM_CPUS"] = "2"
    assert "WROTE" in _run(WRITER, cli_env)
    state = Path(cli_env["MODAL_RAY_STATE"])
    assert (state / "dicts" / "main" / "durable-dict.sqlite").exists()
    assert (state / "queues" / "main" / "durable-queue.sqlite").exists()

    line = next(x for x in _run(READER, cli_env).splitlines() if x.startswith("READ "))
    out = json.loads(line[len("READ ") :])
    assert out["len"] == 1002  # k0..k998, nested, tuple, queue
    assert out["sum"] == sum(range(999))
    assert out["has_k999"] is False
    assert out["nested"] == repr({"list": [1, 2, 3], "set": {4, 5}})
    assert out["tuple"] == "bytes"
    assert out["queue_total"] == 300
    assert out["queue_items"] == list(range(1, 300))  # FIFO kept; item 0 stays consumed
    assert out["partition"] == "in a partition"
    assert out["queue_via_dict"] == 0  # read through the Queue reference stored in the Dict
