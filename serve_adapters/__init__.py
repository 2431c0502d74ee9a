"""serve_adapters: arrives with its issue (web endpoints / volumes)."""
