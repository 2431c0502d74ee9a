"""Run code nobody reviewed in a Sandbox, as a plain script: `python examples/sandbox_run_code.py`.

The sandbox has no network (`block_network=True`), its own filesystem and process tree, and
none of this machine's files: the code below lists its home directory and finds it empty.
On Modal you would attach it to `modal.App.lookup("sandbox-example", create_if_missing=True)`;
here an ephemeral `app.run()` works the same way.
"""

import modal

app = modal.App("sandbox-example")

UNTRUSTED = """
import os, socket
print("sum:", sum(range(10)))
print("home:", os.listdir(os.path.expanduser("~")))
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network: reachable")
except OSError:
    print("network: blocked")
"""


def main() -> None:
    with app.run():
        sb = modal.Sandbox.create(app=app, block_network=True, timeout=120)
        try:
            sb.filesystem.write_text(UNTRUSTED, "/work/job.py")
            p = sb.exec("python", "/work/job.py", timeout=60)
            for line in p.stdout:
                print("sandbox:", line, end="")
            print("exit code:", p.wait())
        finally:
            sb.terminate()


if __name__ == "__main__":
    main()
