"""Engine-neutral sandbox runtime: what runs on the node that hosts sandboxes.

- `isolation`: finds bubblewrap, checks that it can make namespaces, and builds the `bwrap`
  command line of one sandbox (private root, cleared environment, dropped capabilities);
- `agent`: the small stdlib-only program that runs *inside* each sandbox and starts its
  processes and performs its file operations there (so paths resolve in the sandbox's view);
- `supervisor`: owns many sandboxes on one node (process trees, stream pumping with bounded
  buffers, timeouts, tags), driven by the backend's per-node actor.

Nothing here imports Ray; unit tests drive the supervisor directly.
"""
