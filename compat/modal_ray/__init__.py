"""modal-ray's engine-neutral core: specs, the sync/`.aio` helper, config, and the Modal objects.

Nothing in this package imports Ray; `modal_ray.backends.ray` is the only place that does.
"""

__version__ = "0.1.0"
