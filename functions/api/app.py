"""Prediction API Lambda: the FastAPI app behind API Gateway (REST v1 or HTTP v2 events).

The bundle is read from the store and verified ONCE per container, here at import (Lambda
runs the import during its init phase); every invocation reuses the ONNX sessions. A bundle
that fails to load leaves the app up: ``/health`` answers 503 with the reason, predictions
answer 503. ``lifespan="off"``: with lifespan on, Mangum 0.22 re-runs startup per invocation.
Every served forecast is recorded to the store's prediction log in the background
(``stockml.predlog``). Logs are JSON lines, as under ``stockml serve``; each access line
carries Lambda's request id.
"""

from __future__ import annotations

from mangum import Mangum

from stockml.api import create_app
from stockml.api.observability import configure_json_logging
from stockml.predlog import install_shutdown_flush
from stockml.settings import Settings

settings = Settings()
configure_json_logging(settings.api.log_level)
app = create_app(settings)
handler = Mangum(app, lifespan="off")
if app.state.serving.service is not None and app.state.serving.service.log is not None:
    # Lambda sends SIGTERM before it shuts a container down (when an extension is
    # registered): the prediction log writes what it still buffers then
    install_shutdown_flush(app.state.serving.service.log)
