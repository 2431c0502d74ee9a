"""The agent: a small program that runs inside each sandbox, on the standard library only.

The supervisor starts `bwrap ... -- python -I -S /.modal-ray/agent.py FD`, where FD is one end of
a `SOCK_SEQPACKET` socket pair. Over it the agent receives requests (JSON, one per message, with
file descriptors attached by `SCM_RIGHTS`) and answers them:

- `exec`: start a process with the three attached descriptors as its stdin, stdout and stderr
  (pipes whose other ends the supervisor keeps), in its own session; report `started` (or
  `exec_error`) and later `exit` with its return code;
- `kill`: signal an exec's process group;
- `connect`: connect to a port on the sandbox's own loopback and send the socket back (tunnels);
- `open`, `ls`, `mkdir`, `rm`, `stat`: file operations. They run here, inside the sandbox's mount
  namespace, so every path (and every symlink the sandbox's code planted) resolves in the
  sandbox's own view: nothing outside it can be named. `open` sends the opened descriptor back;
  the supervisor then reads and writes that descriptor directly.

Invariants: the control socket is close-on-exec (no process started here inherits it); the agent
trusts nothing it did not create, and the supervisor trusts nothing the agent says beyond the
shape of a message (the agent shares the sandbox with the code it runs). When the socket closes
(the supervisor went away) the agent kills every process it started and exits, which ends the
sandbox.

`send`/`recv` are also the supervisor's framing.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

# Everything else is imported on first use: with an entrypoint, the agent starts beside it, and
# its own start-up should take as little of the node's CPU as possible.

MAX_MESSAGE = 1 << 20  # one control message (JSON); exec argv + env must fit
MAX_FDS = 4

ERRNO_KIND = {
    errno.ENOENT: "NotFound",
    errno.EISDIR: "IsADirectory",
    errno.ENOTDIR: "NotADirectory",
    errno.EEXIST: "PathAlreadyExists",
    errno.ENOTEMPTY: "DirectoryNotEmpty",
    errno.EACCES: "Permission",
    errno.EPERM: "Permission",
    errno.EROFS: "Permission",
    errno.ELOOP: "NotFound",
    errno.EFBIG: "FileTooLarge",
}


def send(
    sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()
) -> None:
    import array
    import json

    data = json.dumps(message, separators=(",", ":")).encode()
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sock.sendmsg([data], anc)
    else:
        sock.sendmsg([data])


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and its descriptors; (None, []) at end of stream. A malformed message is
    returned as `{}` (its descriptors are still handed over, so the caller closes them)."""
    import array
    import json

    fds = array.array("i")
    data, anc, flags, _ = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data and not anc:
        return None, []
    try:
        message = json.loads(data)
    except ValueError:
        message = {}
    if not isinstance(message, dict) or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        message = {}
    return message, list(fds)


def _open_pty(info: dict[str, Any]) -> tuple[int, int, Any]:
    """A pseudo-terminal of the requested size: (master, slave, the child's set-up that makes it
    the controlling terminal of the process's new session)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    rows = int(info.get("rows") or 24)
    cols = int(info.get("cols") or 80)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.set_inheritable(master, False)

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return master, slave, controlling_terminal


def _pump_out(master: int, out: int) -> None:
    """Terminal output to the stdout pipe, until the terminal closes (EIO once every process
    holding its other side has exited)."""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
    except OSError:
        pass
    finally:
        os.close(master)
        os.close(out)


def _pump_in(stdin: int, master: int) -> None:
    """The stdin pipe into the terminal; its end is typed as the terminal's end-of-file."""
    try:
        while True:
            data = os.read(stdin, 65536)
            if not data:
                os.write(master, b"\x04")
                break
            view = memoryview(data)
            while view:
                view = view[os.write(master, view) :]
    except OSError:
        pass
    finally:
        os.close(stdin)
        os.close(master)


def _error(exc: OSError) -> dict[str, Any]:
    kind = ERRNO_KIND.get(exc.errno or 0, "")
    return {"ok": False, "kind": kind, "message": exc.strerror or str(exc)}


class Agent:
    def __init__(self, sock: socket.socket) -> None:
        import threading

        self.sock = sock
        self.lock = threading.Lock()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.watches: dict[Any, int] = {}

    def reply(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        with self.lock:
            send(self.sock, message, fds)

    def serve(self) -> None:
        while True:
            message, fds = recv(self.sock)
            if message is None:
                break
            try:
                self.handle(message, fds)
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self.kill_all()

    def kill_all(self) -> None:
        import signal

        for proc in list(self.procs.values()):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def handle(self, message: dict[str, Any], fds: list[int]) -> None:
        import signal

        op = message.get("op")
        rid = message.get("rid")
        if op == "exec":
            self.exec(message, fds)
            return
        if op == "ping":
            self.reply({"rid": rid, "ok": True})
            return
        if op == "watch":
            try:
                self.watch(message)
            except OSError as exc:
                self.reply({"rid": rid, **_error(exc)})
            else:
                self.reply({"rid": rid, "ok": True})
            return
        if op == "unwatch":
            fd = self.watches.pop(message.get("wid"), None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            return
        if op == "connect":  # a tunnel: a socket connected inside this network namespace
            try:
                conn = socket.create_connection(("127.0.0.1", int(message["port"])), timeout=5)
            except (OSError, ValueError, KeyError) as exc:
                self.reply({"rid": rid, "ok": False, "kind": "", "message": str(exc)})
                return
            try:
                self.reply({"rid": rid, "ok": True}, [conn.fileno()])
            finally:
                conn.close()
            return
        if op == "kill":
            proc = self.procs.get(message.get("xid", -1))
            if proc is not None:
                try:
                    os.killpg(proc.pid, int(message.get("signal", signal.SIGKILL)))
                except OSError:
                    pass
            return
        try:
            result = self.file_op(op, message, fds)
        except OSError as exc:
            self.reply({"rid": rid, **_error(exc)})
        except (TypeError, ValueError) as exc:
            self.reply({"rid": rid, "ok": False, "kind": "", "message": str(exc)})
        else:
            out_fds = result.pop("_fds", [])
            try:
                self.reply({"rid": rid, "ok": True, **result}, out_fds)
            finally:
                for fd in out_fds:
                    os.close(fd)

    def watch(self, message: dict[str, Any]) -> None:
        """inotify on a path (and, if recursive, every directory below it); each event goes
        to the supervisor as `{"event": "watch", "wid", "paths", "type"}`."""
        import ctypes
        import threading

        libc = ctypes.CDLL(None, use_errno=True)
        path = str(message["path"])
        os.stat(path)  # FileNotFoundError for a missing path
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        names: dict[int, str] = {}

        def add(target: str) -> None:
            wd = libc.inotify_add_watch(fd, os.fsencode(target), _WATCH_MASK)
            if wd >= 0:
                names[wd] = target

        add(path)
        if message.get("recursive") and os.path.isdir(path):
            for root, dirs, _ in os.walk(path):
                for d in dirs:
                    add(os.path.join(root, d))
        wid = message["wid"]
        self.watches[wid] = fd
        threading.Thread(
            target=self.watch_loop,
            args=(wid, fd, names, bool(message.get("recursive")), add),
            daemon=True,
        ).start()

    def watch_loop(
        self, wid: Any, fd: int, names: dict[int, str], recursive: bool, add: Any
    ) -> None:
        import struct

        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return  # unwatched: the descriptor was closed
            offset = 0
            while offset + 16 <= len(data):
                wd, mask, _cookie, size = struct.unpack_from("iIII", data, offset)
                raw = data[offset + 16 : offset + 16 + size].rstrip(b"\0")
                offset += 16 + size
                base = names.get(wd)
                if base is None:
                    continue
                full = os.path.join(base, os.fsdecode(raw)) if raw else base
                if recursive and mask & 0x40000100 == 0x40000100:  # IN_CREATE | IN_ISDIR
                    add(full)
                kind = _event_type(mask)
                try:
                    self.reply({"event": "watch", "wid": wid, "paths": [full], "type": kind})
                except OSError:
                    return

    def exec(self, message: dict[str, Any], fds: list[int]) -> None:
        import subprocess
        import threading

        xid = message["xid"]
        if len(fds) != 3:
            self.reply({"event": "exec_error", "xid": xid, "message": "bad descriptors"})
            return
        pty = message.get("pty")
        stdio: tuple[int, int, int] = (fds[0], fds[1], fds[2])
        master = -1
        preexec = None
        try:
            if isinstance(pty, dict):
                master, slave, preexec = _open_pty(pty)
                stdio = (slave, slave, slave)
            try:
                proc = subprocess.Popen(
                    [str(a) for a in message["argv"]],
                    stdin=stdio[0],
                    stdout=stdio[1],
                    stderr=stdio[2],
                    env={str(k): str(v) for k, v in message.get("env", {}).items()},
                    cwd=message.get("cwd") or None,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=preexec,  # only makes the terminal the controlling one
                )
            finally:
                if master >= 0:
                    os.close(stdio[0])  # the slave: only the process keeps it
        except OSError as exc:
            if master >= 0:
                os.close(master)
            self.reply({"event": "exec_error", "xid": xid, **_error(exc)})
            return
        if master >= 0:
            # The terminal's output becomes the process's stdout (stderr is merged into it, as
            # on a terminal), and its stdin is typed into the terminal.
            threading.Thread(
                target=_pump_out, args=(os.dup(master), os.dup(fds[1])), daemon=True
            ).start()
            threading.Thread(target=_pump_in, args=(os.dup(fds[0]), master), daemon=True).start()
        self.procs[xid] = proc
        self.reply({"event": "started", "xid": xid, "pid": proc.pid})
        threading.Thread(target=self.wait, args=(xid, proc), daemon=True).start()

    def wait(self, xid: int, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self.procs.pop(xid, None)
        try:
            self.reply({"event": "exit", "xid": xid, "code": code})
        except OSError:
            pass

    def file_op(self, op: Any, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        import shutil
        import stat

        path = message.get("path")
        if not isinstance(path, str) or "\x00" in path or not path:
            raise ValueError("a path must be a non-empty string without NUL characters")
        if op == "open":
            # Non-blocking open: a FIFO planted at `path` must not hang the agent.
            flags = int(message["flags"]) | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
            fd = os.open(path, flags, 0o644)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                if stat.S_ISDIR(mode):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
                raise ValueError(f"{path!r} is not a regular file")
            os.set_blocking(fd, True)
            return {"_fds": [fd]}
        if op == "ls":
            return {"entries": sorted(os.listdir(path))}
        if op == "mkdir":
            if message.get("parents"):
                os.makedirs(path, exist_ok=True)
            else:
                os.mkdir(path)
            return {}
        if op == "rm":
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if message.get("recursive"):
                    shutil.rmtree(path)
                else:
                    os.rmdir(path)
            else:
                os.unlink(path)
            return {}
        if op == "stat":  # of the path itself (a symlink is described, not followed)
            return _info(path, os.lstat(path))
        if op == "list":
            with os.scandir(path) as it:
                entries = [_info(e.path, e.stat(follow_symlinks=False)) for e in it]
            return {"entries": sorted(entries, key=lambda e: e["name"])}
        raise ValueError(f"unknown operation {op!r}")


# inotify: IN_ACCESS 0x1, IN_MODIFY 0x2, IN_ATTRIB 0x4, IN_CLOSE_WRITE 0x8, IN_MOVED_FROM 0x40,
# IN_MOVED_TO 0x80, IN_CREATE 0x100, IN_DELETE 0x200, IN_DELETE_SELF 0x400, IN_MOVE_SELF 0x800.
_WATCH_MASK = 0x1 | 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800


def _event_type(mask: int) -> str:
    if mask & (0x100 | 0x80):
        return "Create"
    if mask & (0x200 | 0x40 | 0x400 | 0x800):
        return "Remove"
    if mask & (0x2 | 0x4 | 0x8):
        return "Modify"
    if mask & 0x1:
        return "Access"
    return "Unknown"


def _info(path: str, st: os.stat_result) -> dict[str, Any]:
    import stat

    kind = (
        "directory"
        if stat.S_ISDIR(st.st_mode)
        else "symlink"
        if stat.S_ISLNK(st.st_mode)
        else "file"
        if stat.S_ISREG(st.st_mode)
        else "other"
    )
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "permissions": stat.S_IMODE(st.st_mode),
        "modified_time": st.st_mtime,
    }


def main() -> None:
    fd = int(sys.argv[1])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd)
    sock.set_inheritable(False)
    # Its processes are reaped by their waiting threads.
    Agent(sock).serve()


if __name__ == "__main__":
    main()
