#!/usr/bin/env bash
# Sets up modal-ray in ./.venv, from a clone of the repository.
#
#   scripts/setup.sh        system packages modal-ray uses, then `pip install -e .`
#   scripts/setup.sh test   the same plus what the test suite needs, then `pip install -e '.[test]'`
#
# System packages (installed with apt-get where it exists and we are root or have passwordless
# sudo; otherwise a note says what is missing and what it costs):
#   bubblewrap        sandboxes (`modal.Sandbox`) run isolated under it; without it they refuse to start
#   slirp4netns       a sandbox's outbound network (own network namespace, no access to the node's
#                     loopback or Ray's ports); without it sandboxes need `block_network=True`
#   fuse, libfuse2    (test) CloudBucketMount's streaming FUSE mount; without it the mirror mode is used
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
if [[ "$mode" == "test" ]] && ! ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2'; then
    missing+=(fuse libfuse2)
fi

if ((${#missing[@]})); then
    sudo=()
    if [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    fi
    if command -v apt-get >/dev/null 2>&1 && { [[ "$(id -u)" -eq 0 ]] || ((${#sudo[@]})); }; then
        if ! ("${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}") \
            >/dev/null 2>&1; then
            echo "note: could not install ${missing[*]} with apt-get; see README 'System packages'" >&2
        fi
    else
        echo "note: please install ${missing[*]} (system packages); see README 'System packages'" >&2
    fi
fi

python3 -m venv .venv
if [[ "$mode" == "test" ]]; then
    .venv/bin/pip install -q -e '.[test]'
else
    .venv/bin/pip install -q -e .
fi
