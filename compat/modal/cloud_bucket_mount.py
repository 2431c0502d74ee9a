"""`modal.cloud_bucket_mount`: S3-compatible buckets mounted at a path (implementation in
`modal_ray.cloud_bucket_mount` and `modal_ray.volumes.bucket`)."""

from modal_ray.cloud_bucket_mount import CloudBucketMount

__all__ = ["CloudBucketMount"]
