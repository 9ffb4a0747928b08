"""Model monitoring: served forecasts scored against realised prices, drift, freshness, retraining.

- :mod:`stockml.predlog` (beside this package, on the serving path): the API's prediction log;
- :mod:`.results`: where the monitor publishes and how the API reads it (standard library only,
  so serving imports it without pandas);
- :mod:`.predictions`: the log's compaction into Parquet and its reading;
- :mod:`.live`: the live metrics (``stockml.evaluation.score_forecasts``, the forward test's);
- :mod:`.health`: feature drift (PSI), data freshness, the quarantined share;
- :mod:`.retrain`: the retraining decision and its triggers (local job, AWS Batch);
- :mod:`.monitor`: one monitor run (``stockml monitor``, the monitor Lambda);
- :mod:`.replay`: forecasts of past sessions through the serving code, as the API served them.

Nothing is imported here: the serving path imports ``.results`` alone.
"""
