"""stockml: serverless MLOps for daily stock price prediction."""

__version__ = "0.1.0"
