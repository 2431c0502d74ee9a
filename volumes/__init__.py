"""volumes: arrives with its issue (web endpoints / volumes)."""
