"""The feature library: technical indicators, market context, news sentiment and targets.

``build_features(bars, market, news, config)`` is the one entry point training and the feature
pipeline use; ``feature_columns(config)`` and ``target_columns(config)`` name its outputs.
"""

from stockml.features.build import ID_COLUMNS, build_features, feature_columns
from stockml.features.config import FeatureConfig
from stockml.features.targets import target_columns

__all__ = ["ID_COLUMNS", "FeatureConfig", "build_features", "feature_columns", "target_columns"]
