"""Which lines of Ray's worker log files belong to an app (markers, cursors, partial lines)."""

from __future__ import annotations

from pathlib import Path

from modal_ray.worker_logs import START, read_lines, wanted, worker_pid

POOL = "ServeReplica:modal-main-ap-1-Worker-0123456789"
MATCH = {"actor_prefixes": [f"{POOL[:-11]}"], "task_names": ["shout"]}


def test_stretches_are_told_apart_and_reading_continues(tmp_path: Path) -> None:
    path = tmp_path / "worker-abc-01000000-4242.out"
    path.write_text(
        ":job_id:01000000\n"
        "startup noise\n"
        ":task_name:other\n"
        "not ours\n"
        ":task_name:shout\n"
        "fn line 1\n"
        f":actor_name:{POOL}:Worker\n"
        "cls line\n"
        ":actor_name:ServeReplica:modal-main-ap-2-Worker-9999999999:Worker\n"
        "other app's replica\n"
        ":task_name:shout\n"
        "fn line 2\n"
        "half a li"
    )
    lines, cursor = read_lines(path, START, MATCH, 1 << 20)
    assert lines == [
        ("shout", "fn line 1"),
        (f"{POOL}:Worker", "cls line"),
        ("shout", "fn line 2"),
    ]
    assert cursor[1:] == ("task", "shout")
    # The unfinished line waits; once finished it is read from the cursor, still in its stretch.
    with open(path, "a") as handle:
        handle.write("ne\n")
    more, cursor2 = read_lines(path, cursor, MATCH, 1 << 20)
    assert more == [("shout", "half a line")]
    assert cursor2[0] == path.stat().st_size
    assert read_lines(path, cursor2, MATCH, 1 << 20) == ([], cursor2)
    assert worker_pid(path) == 4242
    assert worker_pid(tmp_path / "worker-x.err") == 0


def test_small_reads_and_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "worker-a-b-1.err"
    path.write_text(":task_name:shout\n" + "x" * 50 + "\nend\n")
    cursor = START
    got: list[str] = []
    for _ in range(20):
        lines, after = read_lines(path, cursor, MATCH, 16)
        got.extend(line for _, line in lines)
        if after == cursor:
            break
        cursor = after
    assert "".join(got[:-1]) == "x" * 50
    assert got[-1] == "end"


def test_wanted() -> None:
    assert wanted("shout", "task", MATCH)
    assert not wanted("shout", "actor", MATCH)
    assert not wanted("", "", {"actor_prefixes": [""]})
    assert wanted("anything", "actor", {"actor_prefixes": [""]})
