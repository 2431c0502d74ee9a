"""Container-side code: what runs inside the engine's worker processes and replicas.

- `worker`: the wrapper around every input of a task-backed function (`Invocation`: context,
  environment, timeout, failure capture) and how a worker finds the user's code (`FunctionRef`);
- `container`: a Modal container inside one engine replica (`Container`: lifecycle hooks,
  concurrency, timeouts);
- `batching`: dynamic batching for `@modal.batched` (`_Batcher`).

Engine-neutral: nothing here imports Ray; the backend wraps these objects in Ray tasks and Serve
replicas, and `serve_adapters` will wrap the replica runtime for web endpoints.
"""
