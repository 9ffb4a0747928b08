"""Forecasters behind one protocol (``base.Model``): LSTM, XGBoost, LightGBM, baselines, ensemble."""

from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Model, model_entry
from stockml.models.baselines import DriftModel, NaiveModel
from stockml.models.lstm import LSTMModel
from stockml.models.trees import LightGBMModel, XGBoostModel

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "DriftModel",
    "LSTMModel",
    "LightGBMModel",
    "Model",
    "NaiveModel",
    "XGBoostModel",
    "model_entry",
]
