"""Deployed web endpoints (issue 11): `modal deploy` of an app with a web function and a Server
serves them on the session's long-lived head after the deploying process
exited, at URLs that stay the same across a redeploy; `Function.from_name(...).get_web_url()`
and `Server.from_name(...).get_url()` return them; `modal app rollback` serves the earlier
version's at the same URLs; `modal app stop` closes them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import modal_cli

APP = textwrap.dedent(
    """
    import subprocess
    import sys

    import modal

    app = modal.App("web-deploy-demo")


    @app.function(cpu=0.1)
    @modal.fastapi_endpoint()
    def hello(name: str = "world") -> str:
        return f"VERSION hello {name}"


    @app.server(port=18744, unauthenticated=True, cpu=0.1)
    class Files:
        @modal.enter()
        def start(self) -> None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "http.server", "18744", "--bind", "127.0.0.1"]
            )

        @modal.exit()
        def stop(self) -> None:
            self.proc.terminate()
    """
)

LOOKUP = textwrap.dedent(
    """
    import json
    import modal

    print("RESULT", json.dumps({
        "hello": modal.Function.from_name("web-deploy-demo", "hello").get_web_url(),
        "server": modal.Server.from_name("web-deploy-demo", "Files").get_url(),
        "remote": modal.Function.from_name("web-deploy-demo", "hello").remote("by-call"),
    }))
    """
)


def _write(folder: Path, version: str) -> None:
    (folder / "web_deploy_app.py").write_text(APP.replace("VERSION", version))


def _urls(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"Created web endpoint (\S+) => (http://\S+)", stdout))


def _get_when_up(url: str, deadline_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        r = httpx.get(url, timeout=60)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_deployed_endpoints_outlive_the_deploy_keep_urls_and_stop(
    cluster_head: dict[str, str], tmp_path: Path
) -> None:
    env = cluster_head
    _write(tmp_path, "v1")
    deployed = modal_cli("deploy", "web_deploy_app.py", env=env, cwd=tmp_path, timeout=300)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    urls = _urls(deployed.stdout + deployed.stderr)
    assert set(urls) == {"hello", "Files"}
    # The deploying process has exited: the endpoints are the cluster's.
    assert httpx.get(urls["hello"], params={"name": "ray"}, timeout=60).json() == "v1 hello ray"
    assert _get_when_up(urls["Files"] + "/web_deploy_app.py").text == APP.replace("VERSION", "v1")

    _write(tmp_path, "v2")
    again = modal_cli("deploy", "web_deploy_app.py", env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _urls(again.stdout + again.stderr) == urls  # the same URLs after a redeploy
    assert httpx.get(urls["hello"], timeout=60).json() == "v2 hello world"

    looked_up = subprocess.run(
        [sys.executable, "-c", LOOKUP],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert looked_up.returncode == 0, looked_up.stderr[-3000:]
    line = [x for x in looked_up.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    assert result == {"hello": urls["hello"], "server": urls["Files"], "remote": "v2 hello by-call"}

    # A rollback serves the earlier version's endpoints again, at the same URLs.
    rolled = modal_cli("app", "rollback", "web-deploy-demo", env=env, cwd=tmp_path, timeout=300)
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    assert httpx.get(urls["hello"], timeout=60).json() == "v1 hello world"
    assert _get_when_up(urls["Files"] + "/web_deploy_app.py").status_code == 200

    stopped = modal_cli("app", "stop", "web-deploy-demo", env=env, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    for url in urls.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=10)
