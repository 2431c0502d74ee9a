"""serve_adapters: what an engine replica runs, engine-neutral.

`replica.Replica` is one Modal container as a replica serves it: started once, taking calls,
chunks of calls and generator calls, stopped once. The backend hosts it (the Ray backend's Serve
deployment class delegates to it); the web endpoint adapters (ASGI applications for
`@modal.fastapi_endpoint`, `@modal.asgi_app`, `@modal.wsgi_app`, `@modal.web_server`) will wrap
the same object. Nothing here imports Ray: objects are handed to the backend, never the reverse.
"""
