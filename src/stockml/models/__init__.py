"""Forecasters behind one protocol (``base.Model``): LSTM, XGBoost, LightGBM, baselines, and the
ensemble of them."""

from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Model, model_entry
from stockml.models.baselines import DriftModel, NaiveModel
from stockml.models.ensemble import ENSEMBLE, EnsembleModel
from stockml.models.lstm import LSTMModel
from stockml.models.trees import LightGBMModel, XGBoostModel

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "DriftModel",
    "ENSEMBLE",
    "EnsembleModel",
    "LSTMModel",
    "LightGBMModel",
    "Model",
    "NaiveModel",
    "XGBoostModel",
    "model_entry",
]
