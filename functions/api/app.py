"""Prediction API Lambda: the FastAPI app behind API Gateway (REST v1 or HTTP v2 events).

The bundle is read from the store and verified ONCE per container, here at import (Lambda
runs the import during its init phase); every invocation reuses the ONNX sessions. A bundle
that fails to load leaves the app up: ``/health`` answers 503 with the reason, predictions
answer 503. ``lifespan="off"``: with lifespan on, Mangum 0.22 re-runs startup per invocation.
Every served forecast is recorded to the store's prediction log in the background
(``stockml.predlog``).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum

from stockml.api import create_app
from stockml.predlog import install_shutdown_flush
from stockml.settings import Settings

logger = Logger()
# JSON logs (with the Lambda request id) for the package's loggers too: access log, errors
copy_config_to_registered_loggers(source_logger=logger, include={"stockml", "stockml.api.access"})

app = create_app(Settings())
handler = Mangum(app, lifespan="off")
if app.state.serving.service is not None and app.state.serving.service.log is not None:
    # Lambda sends SIGTERM before it shuts a container down (when an extension is
    # registered): the prediction log writes what it still buffers then
    install_shutdown_flush(app.state.serving.service.log)
