"""Helpers of the stockml dashboard: configuration, the API client, response parsing, charts.

The dashboard talks to the prediction API only (over HTTP, with the API key), so it can be
hosted anywhere; nothing here imports the ``stockml`` package. The UI is in
``dashboard/streamlit_app.py`` and ``dashboard/app_pages/``.
"""
