"""Run programs of Modal's public example repository, unchanged, on modal-ray.

    python tests/external/modal_examples.py /path/to/modal-examples [--only P1,P4] [--timeout S]

The checkout is modal-labs/modal-examples at commit d269f900de96e971bca0a5ac72c602e7cb00e582 (the
fork john-z-huang/modal-examples holds it too). Its code is read and run from where it is; nothing
of it is copied into this project. Without a checkout path the script says so and exits 0: CI does
not need the repository. pytest never collects this file (its name has no `test_` prefix).

Each program P1..P15 runs exactly as its command in issue 13 says, from the checkout's root, in a
fresh process group with the `modal` and `python` of the environment that runs this script (the
executables next to `sys.executable`, also first on the programs' PATH). Each run gets its own
state store (`MODAL_RAY_STATE`), temporary directory (`TMPDIR`: Ray keeps its session folders
there) and a marker variable; when the program ends (or its timeout passes, or a `modal serve`
is stopped with SIGINT after its checks) the harness waits for every process that carries the
marker to exit, kills any that remain (their process group, then each by id), reports
them as a failure, and removes the temporary directory. Output: one line per program,
`P1 PASS` or `P1 FAIL: <reason>` with a short excerpt, then `modal-examples: N passed, M failed`.
The exit status is 0 when every selected program passed.

Host prerequisites (issue 13 item 2):
- Python packages the programs' images install (`uv_pip_install`): with the default
  `MODAL_RAY_PACKAGES=install` modal-ray installs them into a Ray runtime_env, which needs the
  package index reachable from the host. Ray builds that environment as a copy of the one running
  the workers (this virtualenv), so what an image does not list comes from here: P11's `web`
  function lists only `inflect` but imports FastAPI and takes a file upload (FastAPI comes with
  Ray Serve, `python-multipart` is a modal-ray dependency for such forms). Offline, install the
  images' packages here and run with `MODAL_RAY_PACKAGES=check`: scikit-learn (P3);
  fastapi[standard] (P8, P9, P11, P12); flask (P10); opencv-python<4.11, numpy<2, inflect (P11).
  P13's streamlit~=1.35 needs protobuf<5, which Ray's worker cannot run with: in `install` mode
  modal-ray puts it in a package layer of its own (a warning says so); in `check` mode it cannot
  be installed here without breaking Ray.
- System libraries: libGL and glib (`libgl1`, `libglib2.0-0` on Debian/Ubuntu) for opencv (P11);
  `apt_install(...)` steps are not run by modal-ray, the host provides them. `libgomp1` (P3).
- Sandboxes (P15): bubblewrap (`bwrap`) able to create namespaces, or an operator's
  `MODAL_RAY_SANDBOX_ISOLATION=none` (unisolated, on purpose). P15 looks its app up with
  `App.lookup(..., create_if_missing=True)`, which needs a long-lived cluster: the harness starts
  one for it with `modal-ray cluster start` (in the run's state store) and stops it afterwards.
- P8 declares `gpu="h100"` on an endpoint that does no GPU work. On a machine without that GPU
  it runs only where the operator has turned on modal-ray's documented switch
  `MODAL_RAY_GPU_FALLBACK=cpu` (docs/operations.md: a GPU request no node can provide runs
  without a GPU, with a warning; issue 13 item 3). This harness is P8's operator: it sets the
  switch for P8's run only (`Program.operator_env`), never for other programs, and a value
  already in this script's environment wins (`MODAL_RAY_GPU_FALLBACK=none` shows the refusal
  that P8 gets without it). Where the node has an H100, the switch changes nothing.
- P8's proxy-auth check creates a token with `modal workspace proxy-tokens create` in the run's
  own state store.
- Loopback HTTP (127.0.0.1) for the web programs; `httpx` in this environment (test extras).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
MODAL = str(BIN / "modal")
PYTHON = str(BIN / "python")
MODAL_RAY = str(BIN / "modal-ray")
MARKER = "MODAL_EXAMPLES_HARNESS_RUN"
# `✓ Created web function hello => http://127.0.0.1:8001` (Modal prints the same shape).
# Seconds a `modal serve` has to stop after Ctrl-C (it gives its app's process 60 s itself).
STOP_GRACE_S = 120.0
URL_LINE = re.compile(r"Created web function (\S+) => (https?://\S+)")


class Failed(Exception):
    """A program did not meet its success criterion."""


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    leftovers: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


@dataclass
class Program:
    id: str
    path: str
    argv: list[str]
    timeout: float
    check: Callable[[Run], None]
    # A `modal serve` program: the web functions whose URLs to await.
    serve_tags: tuple[str, ...] = ()
    # Needs a long-lived cluster (a deployed or looked-up app): the run starts one with
    # `modal-ray cluster start` in its own state store, exports its address, stops it after.
    cluster: bool = False
    # Settings an operator turns on for this program's run (documented in the module
    # docstring); a value already in the harness's environment wins.
    operator_env: dict[str, str] = field(default_factory=dict)


# -- processes --------------------------------------------------------------------------------


def marked_pids(marker: str) -> list[int]:
    """Processes of this user whose environment holds `MARKER=marker`."""
    needle = f"{MARKER}={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry))
    return pids


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd[:80]}"


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group the program leads: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def sweep(marker: str, pgid: int, grace: float = 30.0) -> list[str]:
    """Wait for the run's processes to exit; kill and name the ones that do not."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not marked_pids(marker):
            return []
        time.sleep(0.5)
    left = [describe(p) for p in marked_pids(marker)]
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in marked_pids(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return left


# -- one run ----------------------------------------------------------------------------------


class Run:
    """One program's process, its private environment, and what it printed."""

    def __init__(self, program: Program, checkout: Path, timeout: float) -> None:
        self.program = program
        self.checkout = checkout
        self.timeout = timeout
        self.marker = uuid.uuid4().hex
        # Short: Ray's Unix sockets live under the temporary directory.
        self.tmp = Path(tempfile.mkdtemp(prefix="mex-", dir="/tmp"))
        state = self.tmp / "state"
        state.mkdir()
        (self.tmp / "t").mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_ENVIRONMENT", "VIRTUAL_ENV")
        }
        env.update(
            {
                MARKER: self.marker,
                "MODAL_RAY_STATE": str(state),
                "TMPDIR": str(self.tmp / "t"),
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_DEDUP_LOGS": "0",
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "200",
            }
        )
        for name, value in program.operator_env.items():
            env.setdefault(name, value)
        self.env = env
        self.out_path = self.tmp / "stdout"
        self.err_path = self.tmp / "stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster_started = False
        self.result: Result | None = None

    def argv(self) -> list[str]:
        exe = {"modal": MODAL, "python": PYTHON}
        return [exe.get(a, a) for a in self.program.argv]

    def start(self) -> None:
        if self.program.cluster:
            self.start_cluster()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.checkout,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self) -> Result:
        """Wait for the program to end by itself (or stop it at its timeout)."""
        assert self.proc is not None
        timed_out = False
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(self.proc)
        return self.finish(timed_out)

    def interrupt(self) -> Result:
        """Ctrl-C a `modal serve` as a terminal does (SIGINT to its process group), then wait
        for it to end."""
        assert self.proc is not None
        timed_out = False
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(self.proc)
        return self.finish(timed_out)

    def start_cluster(self) -> None:
        p = subprocess.run(
            [MODAL_RAY, "cluster", "start", "--num-cpus", "4"],
            cwd=self.checkout,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.cluster_started = True
        m = re.search(r"MODAL_RAY_ADDRESS=(\S+)", p.stdout)
        if p.returncode != 0 or not m:
            raise Failed(
                f"`modal-ray cluster start` exit {p.returncode}: {excerpt(p.stdout + p.stderr)!r}"
            )
        self.env["MODAL_RAY_ADDRESS"] = m.group(1)

    def stop_cluster(self) -> None:
        if self.cluster_started:
            self.cluster_started = False
            subprocess.run(
                [MODAL_RAY, "cluster", "stop"],
                cwd=self.checkout,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
            )

    def finish(self, timed_out: bool) -> Result:
        assert self.proc is not None
        self.stop_cluster()
        left = sweep(self.marker, self.proc.pid)
        self.result = Result(self.proc.returncode, self.stdout(), self.stderr(), timed_out, left)
        return self.result

    def close(self) -> None:
        if self.proc is not None and self.result is None:
            stop_group(self.proc)
        self.stop_cluster()
        if self.result is None:
            sweep(self.marker, self.proc.pid if self.proc is not None else -1, grace=10.0)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- serve helpers --

    def await_urls(self, tags: tuple[str, ...], deadline_s: float) -> dict[str, str]:
        """The URLs `modal serve` printed for `tags`, once all of them are printed."""
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        while True:
            urls = {
                m.group(1): m.group(2) for m in URL_LINE.finditer(self.stdout() + self.stderr())
            }
            if all(t in urls for t in tags):
                return urls
            if self.proc.poll() is not None:
                raise Failed(
                    f"`modal serve` exited ({self.proc.returncode}) before printing URLs for"
                    f" {', '.join(t for t in tags if t not in urls)}"
                )
            if time.monotonic() > deadline:
                raise Failed(f"no URL printed for {', '.join(t for t in tags if t not in urls)}")
            time.sleep(0.5)


# -- checks -----------------------------------------------------------------------------------


def excerpt(text: str, n: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def expect_exit_0(r: Result) -> None:
    if r.timed_out:
        raise Failed(f"timed out; output: {excerpt(r.output)!r}")
    if r.returncode != 0:
        raise Failed(f"exit {r.returncode}; output: {excerpt(r.output)!r}")


def lines(text: str) -> list[str]:
    return [ln.rstrip("\r") for ln in text.splitlines()]


def expect_in_order(text: str, wanted: list[str | re.Pattern[str]], where: str) -> None:
    """Each of `wanted` appears in `text` (a substring or a pattern), in this order."""
    pos = 0
    for w in wanted:
        if isinstance(w, str):
            i = text.find(w, pos)
            end = i + len(w)
        else:
            m = w.search(text, pos)
            i, end = (m.start(), m.end()) if m else (-1, -1)
        if i < 0:
            shown = w if isinstance(w, str) else w.pattern
            raise Failed(f"{where} lacks {shown!r} (in order); {where}: {excerpt(text[pos:])!r}")
        pos = end


def expect_count(text: str, pattern: str, at_least: int, where: str) -> int:
    n = len(re.findall(pattern, text))
    if n < at_least:
        raise Failed(f"{where} has {n} lines matching {pattern!r}, wanted >= {at_least}")
    return n


def check_p1(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    exact = [ln.strip() for ln in lines(r.stdout)]
    want = ["1000000", "1000000", "2646700"]
    got = [ln for ln in exact if ln in want]
    if got != want:
        raise Failed(f"stdout result lines {got}, wanted {want}; stdout: {excerpt(r.stdout)!r}")
    expect_count(r.stdout, r"hello \d*[02468]\b", 100, "stdout")
    expect_count(r.stderr, r"world \d*[13579]\b", 100, "stderr")


def check_p2(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    got = [ln.strip() for ln in lines(r.stdout) if re.fullmatch(r"\s*\d+\s*", ln)]
    if got != [str(i) for i in range(10)]:
        raise Failed(f"stdout number lines {got}, wanted 0..9; stdout: {excerpt(r.stdout)!r}")


FLOAT = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def check_p3(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    expect_in_order(
        r.stdout,
        [re.compile(rf"Function time spent: {FLOAT}"), re.compile(rf"Full time spent: {FLOAT}")],
        "stdout",
    )
    # The script never enables output, so (as in Modal) the function's log is not shown.
    if "Inside run!" in r.output:
        raise Failed("remote log 'Inside run!' shown, but the script does not enable output")
    # Upstream CI form: `modal run` must pick the app's only function.
    alt_program = Program(
        run.program.id, run.program.path, ["modal", "run", run.program.path], 0, check_p3
    )
    alt = Run(alt_program, run.checkout, run.timeout)
    try:
        alt.start()
        r2 = alt.wait()
        try:
            expect_exit_0(r2)
            expect_in_order(r2.output, ["Inside run!"], "output")
        except Failed as e:
            raise Failed(f"`modal run` form: {e}") from None
        if r2.leftovers:
            raise Failed(f"`modal run` form left processes: {'; '.join(r2.leftovers[:3])}")
    finally:
        alt.close()


def check_p4(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    expect_in_order(
        r.stdout,
        [
            "Characters: ['!', '\"', '#', '$', '%', '&']",
            "ASCII codes: [33, 34, 35, 36, 37, 38]",
        ],
        "stdout",
    )


def check_p5(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    expect_count(r.output, r"Printing with period 5 seconds:", 8, "output")
    expect_count(r.output, r"Printing with cron every minute:", 1, "output")


def check_p6(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    if "foofoo" not in [ln.strip() for ln in lines(r.stdout)]:
        raise Failed(f"stdout lacks a line 'foofoo'; stdout: {excerpt(r.stdout)!r}")
    for s in ("step1 done", "step2 done"):
        if s not in r.output:
            raise Failed(f"output lacks {s!r}")


def check_p7(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    if "AssertionError" in r.output:
        raise Failed(f"AssertionError: {excerpt(r.output)!r}")
    expect_in_order(r.stdout, ["Creating getters", "Putting values"], "stdout")


def http() -> Any:
    import httpx

    return httpx.Client(timeout=60.0, follow_redirects=False)


def request(client: Any, method: str, url: str, ready_s: float = 120.0, **kw: Any) -> Any:
    """An HTTP request that waits out 502/503 while the endpoint is still starting."""
    import httpx

    deadline = time.monotonic() + ready_s
    while True:
        try:
            resp = client.request(method, url, **kw)
        except httpx.TransportError as e:
            if time.monotonic() > deadline:
                raise Failed(f"{method} {url}: {type(e).__name__}: {e}") from None
        else:
            if resp.status_code not in (502, 503) or time.monotonic() > deadline:
                return resp
        time.sleep(1.0)


def expect_response(resp: Any, status: int, what: str) -> None:
    if resp.status_code != status:
        raise Failed(
            f"{what}: HTTP {resp.status_code} (wanted {status}): {excerpt(resp.text, 200)!r}"
        )


def expect_json(resp: Any, value: Any, what: str) -> None:
    expect_response(resp, 200, what)
    try:
        got = resp.json()
    except ValueError:
        raise Failed(f"{what}: not JSON: {excerpt(resp.text, 200)!r}") from None
    if got != value:
        raise Failed(f"{what}: {got!r}, wanted {value!r}")


def serve(run: Run) -> dict[str, str]:
    return run.await_urls(run.program.serve_tags, run.timeout)


def stopped_cleanly(run: Run) -> None:
    r = run.interrupt()
    if r.timed_out:
        raise Failed(
            f"`modal serve` still ran {STOP_GRACE_S:.0f} s after SIGINT: {excerpt(r.output)!r}"
        )


def proxy_token(run: Run) -> tuple[str, str]:
    """A proxy-auth token made in the run's own state store, as an operator makes one."""
    p = subprocess.run(
        [MODAL, "workspace", "proxy-tokens", "create"],
        cwd=run.checkout,
        env=run.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = p.stdout + p.stderr
    if p.returncode != 0:
        raise Failed(
            f"`modal workspace proxy-tokens create` exit {p.returncode}: {excerpt(text)!r}"
        )
    key = re.search(r"\bwk-[A-Za-z0-9_-]+", text)
    secret = re.search(r"\bws-[A-Za-z0-9_-]+", text)
    if not (key and secret):
        raise Failed(f"no wk-/ws- token in proxy-tokens output: {excerpt(text)!r}")
    return key.group(0), secret.group(0)


def check_p8(run: Run) -> None:
    urls = serve(run)
    with http() as c:
        expect_json(request(c, "GET", urls["hello"]), "Hello world!", "GET hello")
        expect_json(
            request(c, "GET", urls["greet"], params={"user": "Ada"}), "Hello Ada!", "GET greet"
        )
        expect_json(
            request(c, "POST", urls["goodbye"], json={"name": "Ada"}),
            "Goodbye Ada!",
            "POST goodbye",
        )
        expect_json(
            request(c, "POST", urls["goodbye"], json={}), "Goodbye world!", "POST goodbye {}"
        )
        resp = request(c, "GET", urls["WebApp.web"])
        expect_response(resp, 200, "GET WebApp.web")
        body = resp.json()
        if not (isinstance(body, dict) and body.get("start_time") and body.get("current_time")):
            raise Failed(f"GET WebApp.web: {body!r}")
        from datetime import datetime

        start = datetime.fromisoformat(str(body["start_time"]).replace("Z", "+00:00"))
        now = datetime.fromisoformat(str(body["current_time"]).replace("Z", "+00:00"))
        if start > now:
            raise Failed(f"GET WebApp.web: start_time after current_time: {body!r}")
        docs = request(c, "GET", urls["hello"].rstrip("/") + "/docs")
        expect_response(docs, 200, "GET hello/docs")
        if "html" not in docs.headers.get("content-type", ""):
            raise Failed(f"GET hello/docs: content-type {docs.headers.get('content-type')!r}")
        secret_url = urls["expensive_secret"]
        expect_response(request(c, "GET", secret_url), 401, "GET expensive_secret without token")
        key, secret = proxy_token(run)
        expect_json(
            request(c, "GET", secret_url, headers={"Modal-Key": key, "Modal-Secret": secret}),
            "I didn't care for 'The Godfather'. It insists upon itself.",
            "GET expensive_secret with token",
        )
    n = run.stdout().count("🏁 Starting up!") + run.stderr().count("🏁 Starting up!")
    if n < 1:
        raise Failed("no remote log '🏁 Starting up!'")
    stopped_cleanly(run)


def check_p9(run: Run) -> None:
    urls = serve(run)
    base = urls["fastapi_app"].rstrip("/")
    with http() as c:
        expect_json(request(c, "GET", base + "/"), "Hello World", "GET fastapi_app /")
        expect_json(
            request(c, "POST", base + "/foo", json={"name": "x"}), {"name": "x"}, "POST /foo"
        )
        expect_json(request(c, "POST", urls["f"], json={"name": "x"}), "Hello x", "POST f")
        expect_response(request(c, "POST", urls["f"], json={}), 422, "POST f {}")
    deadline = time.monotonic() + 30
    while "GET /     - received user_agent=" not in run.stdout() + run.stderr():
        if time.monotonic() > deadline:
            raise Failed("no remote log 'GET /     - received user_agent=...'")
        time.sleep(0.5)
    stopped_cleanly(run)


def check_p10(run: Run) -> None:
    urls = serve(run)
    base = urls["flask_app"].rstrip("/")
    with http() as c:
        resp = request(c, "GET", base + "/")
        expect_response(resp, 200, "GET /")
        if resp.text != "Hello Flask World!":
            raise Failed(f"GET /: {excerpt(resp.text, 200)!r}")
        expect_json(request(c, "POST", base + "/foo", json={"a": 1}), {"a": 1}, "POST /foo")
    stopped_cleanly(run)


def solid_png(size: int = 64) -> bytes:
    """A size x size solid grey RGB PNG (no faces in it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\0" + b"\x80" * (3 * size) for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def check_p11(run: Run) -> None:
    urls = serve(run)
    base = urls["web"].rstrip("/")
    with http() as c:
        resp = request(c, "GET", base + "/")
        expect_response(resp, 200, "GET /")
        if "<form" not in resp.text or 'type="file"' not in resp.text:
            raise Failed(f"GET /: no upload form: {excerpt(resp.text, 200)!r}")
        png = solid_png()
        resp = request(c, "POST", base + "/process", files={"file": ("grey.png", png, "image/png")})
        expect_response(resp, 200, "POST /process (PNG)")
        if "Zero Faces Detected" not in resp.text:
            raise Failed(f"POST /process (PNG): {excerpt(resp.text, 200)!r}")
        resp = request(
            c, "POST", base + "/process", files={"file": ("x.txt", b"not an image", "text/plain")}
        )
        expect_response(resp, 400, "POST /process (not an image)")
    stopped_cleanly(run)


def check_p12(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    expect_in_order(
        r.stdout,
        [
            re.compile(r"URL: http"),
            "submitting request",
            re.compile(r"got request id: \S+, polling status"),
            "request result is PENDING",
            "request completed successfully",
            "retrieving result",
            "result is {'response': '!dlrow ,olleH'}",
            "done",
        ],
        "stdout",
    )
    expect_in_order(
        r.output,
        ["begin cold booting", "end cold booting", "begin run with Hello, world!"],
        "remote logs",
    )


def check_p13(run: Run) -> None:
    urls = serve(run)
    base = urls["run"].rstrip("/")
    with http() as c:
        resp = request(c, "GET", base + "/", ready_s=240)
        expect_response(resp, 200, "GET /")
        if "<html" not in resp.text.lower():
            raise Failed(f"GET /: not HTML: {excerpt(resp.text, 200)!r}")
        resp = request(c, "GET", base + "/_stcore/health", ready_s=120)
        expect_response(resp, 200, "GET /_stcore/health")
        if resp.text.strip() != "ok":
            raise Failed(f"GET /_stcore/health: {excerpt(resp.text, 200)!r}")
    stopped_cleanly(run)


def check_p14(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    m = re.search(r"requesting server\.py from Modal Server at (\S+)\n", r.stdout)
    if not m:
        raise Failed(f"stdout lacks 'requesting server.py from ...': {excerpt(r.stdout)!r}")
    source = (run.checkout / run.program.path).read_text()
    if source not in r.stdout[m.end() :]:
        raise Failed(f"the body after the URL line is not 07_web/server.py: {excerpt(r.stdout)!r}")


def check_p15(run: Run) -> None:
    r = run.wait()
    expect_exit_0(r)
    expect_in_order(
        r.stdout,
        ["hello, world!", "The result is: 15", "Attempting to divide by zero..."],
        "stdout",
    )
    if "Execution Error: division by zero" not in r.stderr:
        raise Failed(f"stderr lacks 'Execution Error: division by zero': {excerpt(r.stderr)!r}")


def P(
    id: str,
    path: str,
    argv: list[str],
    timeout: float,
    check: Callable[[Run], None],
    serve_tags: tuple[str, ...] = (),
    cluster: bool = False,
    operator_env: dict[str, str] | None = None,
) -> Program:
    return Program(id, path, argv, timeout, check, serve_tags, cluster, operator_env or {})


PROGRAMS = [
    P(
        "P1",
        "01_getting_started/hello_world.py",
        ["modal", "run", "01_getting_started/hello_world.py"],
        300,
        check_p1,
    ),
    P(
        "P2",
        "01_getting_started/generators.py",
        ["modal", "run", "01_getting_started/generators.py"],
        300,
        check_p2,
    ),
    P(
        "P3",
        "02_building_containers/import_sklearn.py",
        ["python", "02_building_containers/import_sklearn.py"],
        600,
        check_p3,
    ),
    P(
        "P4",
        "03_scaling_out/dynamic_batching.py",
        ["modal", "run", "03_scaling_out/dynamic_batching.py"],
        300,
        check_p4,
    ),
    P(
        "P5",
        "05_scheduling/schedule_simple.py",
        ["python", "-m", "05_scheduling.schedule_simple"],
        400,
        check_p5,
    ),
    P(
        "P6",
        "08_advanced/parallel_execution.py",
        ["modal", "run", "08_advanced/parallel_execution.py"],
        300,
        check_p6,
    ),
    P("P7", "misc/queue_simple.py", ["python", "misc/queue_simple.py"], 300, check_p7),
    P(
        "P8",
        "07_web/basic_web.py",
        ["modal", "serve", "07_web/basic_web.py"],
        400,
        check_p8,
        ("hello", "greet", "goodbye", "WebApp.web", "expensive_secret"),
        # `expensive_secret` asks for an H100 it does not use (see the module docstring).
        operator_env={"MODAL_RAY_GPU_FALLBACK": "cpu"},
    ),
    P(
        "P9",
        "07_web/fastapi_app.py",
        ["modal", "serve", "07_web/fastapi_app.py"],
        400,
        check_p9,
        ("fastapi_app", "f"),
    ),
    P(
        "P10",
        "07_web/flask_app.py",
        ["modal", "serve", "07_web/flask_app.py"],
        400,
        check_p10,
        ("flask_app",),
    ),
    P(
        "P11",
        "07_web/count_faces.py",
        ["modal", "serve", "07_web/count_faces.py"],
        600,
        check_p11,
        ("web",),
    ),
    P(
        "P12",
        "09_job_queues/web_job_queue_wrapper.py",
        ["modal", "run", "09_job_queues/web_job_queue_wrapper.py::test_polling"],
        400,
        check_p12,
    ),
    P(
        "P13",
        "10_integrations/streamlit/serve_streamlit.py",
        ["modal", "serve", "10_integrations/streamlit/serve_streamlit.py"],
        600,
        check_p13,
        ("run",),
    ),
    P("P14", "07_web/server.py", ["modal", "run", "07_web/server.py"], 300, check_p14),
    P(
        "P15",
        "13_sandboxes/simple_code_interpreter.py",
        ["python", "13_sandboxes/simple_code_interpreter.py"],
        300,
        check_p15,
        cluster=True,
    ),
]


def run_program(
    program: Program, checkout: Path, timeout: float | None, logs: Path | None = None
) -> str | None:
    """None when the program passed, else why it failed."""
    if not (checkout / program.path).is_file():
        return f"{program.path} is not in the checkout"
    run = Run(program, checkout, timeout or program.timeout)
    try:
        run.start()
        program.check(run)
        if run.result is None:
            raise Failed("internal: the check did not wait for the program")
        if run.result.leftovers:
            raise Failed(f"processes left after exit: {'; '.join(run.result.leftovers[:3])}")
        return None
    except Failed as e:
        return str(e)
    except Exception as e:  # a harness-side error still reports this program, then goes on
        return f"{type(e).__name__}: {e}"
    finally:
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for name in ("stdout", "stderr"):
                if (run.tmp / name).exists():
                    shutil.copyfile(run.tmp / name, logs / f"{program.id}.{name}")
        run.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", nargs="?", help="a checkout of modal-labs/modal-examples")
    parser.add_argument("--only", help="comma-separated program ids, e.g. P1,P4")
    parser.add_argument("--timeout", type=float, help="seconds per program (default: per program)")
    parser.add_argument("--logs", help="a folder to copy each program's stdout and stderr into")
    args = parser.parse_args(argv)
    # A shell starts background jobs with SIGINT ignored, and children inherit that: the programs
    # must see Ctrl-C (`modal serve` stops on it), so this process catches it, which exec resets
    # to the default in each child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not args.checkout:
        print(
            "modal-examples: skipped: no checkout path given (usage: python"
            " tests/external/modal_examples.py /path/to/modal-examples [--only P1,P4])"
        )
        return 0
    checkout = Path(args.checkout).resolve()
    if not checkout.is_dir():
        print(f"modal-examples: {checkout} is not a directory", file=sys.stderr)
        return 2
    selected = PROGRAMS
    if args.only:
        wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {p.id for p in PROGRAMS})
        if unknown:
            print(f"modal-examples: unknown program ids: {', '.join(unknown)}", file=sys.stderr)
            return 2
        selected = [p for p in PROGRAMS if p.id in wanted]
    passed = failed = 0
    for program in selected:
        reason = run_program(
            program, checkout, args.timeout, Path(args.logs) if args.logs else None
        )
        if reason is None:
            passed += 1
            print(f"{program.id} PASS", flush=True)
        else:
            failed += 1
            print(f"{program.id} FAIL: {' '.join(reason.split())}", flush=True)
    print(f"modal-examples: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
