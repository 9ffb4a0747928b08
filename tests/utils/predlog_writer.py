"""A prediction-log process for the concurrency tests (run as its own process, never imported).

    python tests/utils/predlog_writer.py '<json job>'

The job: ``endpoint``, ``bucket`` and ``role``:

- ``writer``: records ``forecasts`` forecasts (request ids ``<tag>-<i>``, as-of dates spread
  over three sessions, two models, two horizons) through a ``PredictionLog`` flushing in the
  background every ``max_records`` records, as an API container does, then closes it;
- ``compactor``: compacts the log ``rounds`` times.

Once imported it prints ``ready`` and waits for a line on stdin (the writers start together);
at the end it prints one JSON line (what it did).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date

import numpy as np

from stockml.inference import Forecast, ModelForecast
from stockml.monitoring.predictions import compact
from stockml.predlog import PredictionLog
from stockml.storage import Store

DAYS = (date(2017, 11, 8), date(2017, 11, 9), date(2017, 11, 10))


def forecast(i: int) -> Forecast:
    """A forecast whose values encode ``i`` (the test recomputes them)."""
    returns = np.array([i * 1e-5, -i * 1e-5])
    models = {
        name: ModelForecast(returns * k, 100.0 * np.exp(returns * k), None, None, None)
        for k, name in ((1.0, "ensemble"), (2.0, "xgboost"))
    }
    return Forecast(
        "MSFT", "v1", DAYS[i % 3], 100.0, (date(2017, 11, 13), date(2017, 11, 14)), models
    )


def main() -> int:
    job = json.loads(sys.argv[1])
    store = Store(job["bucket"], endpoint_url=job["endpoint"])
    print("ready", flush=True)
    sys.stdin.readline()
    if job["role"] == "writer":
        log = PredictionLog(store, max_records=job["max_records"], max_age_s=0.05)
        for i in range(job["forecasts"]):
            log.record(forecast(i), f"{job['tag']}-{i}")
            if i % 50 == 0:
                time.sleep(0.01)  # requests arrive over time: flushes interleave with them
        log.close()
        print(json.dumps(log.stats()), flush=True)
    else:
        totals = [compact(store, "predictions") for _ in range(job["rounds"])]
        print(json.dumps(totals), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
