"""The Lambda runtime's context object, as the tests pass it to the handlers.

:class:`LambdaContext` has what Powertools (``inject_lambda_context``, batch processing) and
Mangum read, and the remaining time the ingest handler gives its SQS leases. The
``lambda_context`` fixture (tests/conftest.py) is one of it; :func:`context_source` is the same
stand-in for a script run in a fresh interpreter, which must import nothing of the tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


@dataclass
class LambdaContext:
    function_name: str = "stockml-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 900_000

    @property
    def invoked_function_arn(self) -> str:
        return ARN.format(self.function_name)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def context_source(function_name: str, request_id: str) -> str:
    """One line of Python that binds ``context`` to a stand-in with the same attributes."""
    attributes = {
        "function_name": function_name,
        "memory_limit_in_mb": 1024,
        "invoked_function_arn": ARN.format(function_name),
        "aws_request_id": request_id,
    }
    return f"context = type('LambdaContext', (), {attributes!r})()"
