"""`modal.CloudBucketMount`: an S3-compatible bucket (S3, R2, GCS interop, MinIO, ...) mounted
at a path with `volumes={path: CloudBucketMount(...)}`.

Mounted through s3fs on each node (see `modal_ray.volumes.bucket`): with FUSE where the worker
has `/dev/fuse` and fusepy, else mirrored at input start with changes uploaded at input end.
Credentials come from the Secret (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, optional
`AWS_SESSION_TOKEN`/`AWS_REGION`; `GOOGLE_ACCESS_KEY_ID`/`GOOGLE_ACCESS_KEY_SECRET` for GCS HMAC
keys); without a Secret the node's own credentials are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modal_ray.warn import warn_once

from .secret import Secret


@dataclass
class CloudBucketMount:
    """Mounts a cloud bucket to your container. Supports S3-compatible buckets."""

    bucket_name: str
    # Endpoint URL is used to support Cloudflare R2, Google Cloud Storage and other S3 APIs.
    bucket_endpoint_url: str | None = None
    key_prefix: str | None = None
    # Credentials used to access a cloud bucket; omit for public buckets or node credentials.
    secret: Secret | None = None
    # Role ARN for OIDC authentication (Modal only): the node's own credentials are used.
    oidc_auth_role_arn: str | None = None
    read_only: bool = False
    requester_pays: bool = False
    force_path_style: bool = False

    def _mount_spec(self, path: str, environment: str) -> Any:
        """Validated, with the Secret resolved here (the worker needs no state store).

        `environment` is part of the mount-spec protocol (`modal_ray.volumes.protocol`); a
        bucket is not scoped to one."""
        from modal_ray.volumes.bucket import BucketMountSpec

        if not isinstance(self.bucket_name, str) or not self.bucket_name:
            raise ValueError("CloudBucketMount needs a bucket_name (not an ARN or URL).")
        if self.requester_pays and not self.secret:
            raise ValueError("Credentials required in order to use Requester Pays.")
        if self.key_prefix and not self.key_prefix.endswith("/"):
            raise ValueError(
                "key_prefix will be prefixed to all object paths, so it must end in a '/'"
            )
        if self.key_prefix and (
            self.key_prefix.startswith("/") or ".." in self.key_prefix.split("/")
        ):
            raise ValueError(
                "key_prefix must be a relative prefix inside the bucket, without '..'."
            )
        if self.oidc_auth_role_arn:
            warn_once(
                "cbm:oidc",
                "CloudBucketMount(oidc_auth_role_arn=...): Modal's OIDC tokens do not exist on Ray;"
                " the worker nodes' own AWS credentials (instance profile, IRSA, environment) are"
                " used instead.",
            )
        if self.secret is not None and not isinstance(self.secret, Secret):
            raise ValueError("CloudBucketMount(secret=) takes a modal.Secret.")
        env = self.secret._resolve() if self.secret is not None else {}
        creds = {k: v for k, v in env.items() if k.startswith(("AWS_", "GOOGLE_ACCESS_KEY_"))}
        return BucketMountSpec(
            path=path,
            bucket_name=self.bucket_name,
            bucket_endpoint_url=self.bucket_endpoint_url,
            key_prefix=self.key_prefix or "",
            credentials=tuple(sorted(creds.items())),
            read_only=bool(self.read_only),
            requester_pays=bool(self.requester_pays),
            force_path_style=bool(self.force_path_style),
        )


CloudBucketMount.__module__ = "modal.cloud_bucket_mount"
