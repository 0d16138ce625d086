"""The clinical HTTP service: ``create_app(ServeSettings)``, run by ``dermascan serve``.

* :mod:`~dermascan.serving.app` - the app factory and its lifespan; :mod:`~dermascan.serving.settings` - settings.
* :mod:`~dermascan.serving.routes` - thin routers; :mod:`~dermascan.serving.schemas` - request/response models.
* :mod:`~dermascan.serving.analysis` - analyse and store; :mod:`~dermascan.serving.records` - read back, feedback.
* :mod:`~dermascan.serving.engine` - the inference seam (off the event loop).
* :mod:`~dermascan.serving.images` - base64, data URLs, formats and limits; :mod:`~dermascan.serving.errors` - the
  one error shape and handler; :mod:`~dermascan.serving.metrics` - Prometheus.
"""
