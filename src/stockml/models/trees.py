"""Gradient-boosted trees: XGBoost and LightGBM, one booster per horizon.

Both train on the float32-scaled features from ``FeatureSpec.transform``: ONNX compares in
float32, and a float64 threshold between two float32 values could send a row down another
branch than the native model did (LightGBM keeps float64 thresholds: trained on float64
features, one row in 5,000 came out 0.85 off in ONNX). Early stopping picks the number of
trees on the validation slice; the exported and native models are truncated to that number,
so they hold the same trees, and ``refit`` grows that many trees per horizon on more data.

Early stopping minimises the validation MSE, or, given ``val_groups`` (the date of each
validation row: a universe trained to rank), maximises the validation slice's mean daily rank
IC (``stockml.ranking.mean_rank_ic``). The training matrix is binned once and shared by the
boosters of every horizon (only the label changes).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx

from stockml.errors import ModelError
from stockml.model_config import LightGBMConfig, RuntimeConfig, XGBoostConfig
from stockml.models.base import Kind
from stockml.models.onnx_utils import stack_horizons
from stockml.ranking import CrossSections, mean_rank_ic

logger = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (the one probe every model uses)."""
    try:
        import torch
    except ImportError:  # a serving-only install
        return False
    return bool(torch.cuda.is_available())


def xgboost_has_cuda() -> bool:
    """Whether the installed xgboost was compiled with CUDA support."""
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA"))


class XGBoostModel:
    """One ``xgboost.Booster`` per horizon; ``device="cuda"`` when a GPU is present."""

    name = "xgboost"
    kind: Kind = "tabular"

    def __init__(
        self, config: XGBoostConfig | None = None, runtime: RuntimeConfig | None = None
    ) -> None:
        self.config = config or XGBoostConfig()
        self.runtime = runtime or RuntimeConfig()
        cfg, device = self.config, self.runtime.device
        self.device = ("cuda" if cuda_available() else "cpu") if device == "auto" else device
        if self.device == "cuda" and not xgboost_has_cuda():
            # e.g. the xgboost-cpu wheel: train on the CPU rather than fail the job
            logger.warning("xgboost was built without CUDA; training on cpu")
            self.device = "cpu"
        self.params: dict[str, Any] = {
            "objective": "reg:squarederror",
            "max_depth": cfg.max_depth,
            "eta": cfg.learning_rate,
            "subsample": cfg.subsample,
            "colsample_bytree": cfg.colsample_bytree,
            "seed": self.runtime.seed,
            "device": self.device,
            "tree_method": "hist",
        }
        if self.runtime.n_threads is not None:
            self.params["nthread"] = self.runtime.n_threads
        self.boosters_: list[Any] = []
        # trees per horizon that early stopping chose: what ``refit`` trains
        self.iterations_: list[int] = []
        self.n_features_: int | None = None

    def fit(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        val_groups: np.ndarray | None = None,
    ) -> XGBoostModel:
        """One booster per horizon, early-stopped on ``x_val`` (on its mean daily rank IC when
        ``val_groups`` dates its rows)."""
        return self._train(x_train, y_train, (x_val, y_val), None, val_groups)

    def refit(self, x: np.ndarray, y: np.ndarray) -> XGBoostModel:
        """Fresh boosters on ``x``/``y`` with the tree counts ``fit`` chose per horizon."""
        if not self.iterations_:
            raise ModelError("xgboost: refit needs the iterations chosen by fit")
        return XGBoostModel(self.config, self.runtime)._train(x, y, None, self.iterations_)

    def _train(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        rounds: list[int] | None,
        val_groups: np.ndarray | None = None,
    ) -> XGBoostModel:
        import xgboost as xgb

        self.n_features_ = int(x_train.shape[1])
        self.boosters_ = []
        train = xgb.DMatrix(x_train)
        dval = None if val is None else xgb.DMatrix(val[0])
        sections = None if val_groups is None else CrossSections.of(val_groups)
        params = dict(self.params)
        if sections is not None:
            params["disable_default_eval_metric"] = 1
        for h in range(y_train.shape[1]):
            train.set_label(y_train[:, h])
            if val is None or dval is None:
                assert rounds is not None
                booster = xgb.train(params, train, num_boost_round=rounds[h])
            else:
                dval.set_label(val[1][:, h])
                ranked: dict[str, Any] = {}
                if sections is not None:
                    outcome = val[1][:, h]

                    def rank_ic(predt: np.ndarray, _m: Any, outcome: np.ndarray = outcome) -> Any:
                        return "rank_ic", mean_rank_ic(predt, outcome, sections)

                    ranked = {"custom_metric": rank_ic, "maximize": True}
                booster = xgb.train(
                    params,
                    train,
                    num_boost_round=self.config.n_estimators,
                    evals=[(dval, "val")],
                    early_stopping_rounds=self.config.early_stopping_rounds,
                    verbose_eval=False,
                    **ranked,
                )
                # keep only the trees early stopping chose: native and ONNX then agree
                booster = booster[: booster.best_iteration + 1]
            # predictions on CPU after training: serving-side parity and single-row latency
            booster.set_param({"device": "cpu"})
            self.boosters_.append(booster)
        self.iterations_ = [int(b.num_boosted_rounds()) for b in self.boosters_]
        logger.info("xgboost trees per horizon: %s", self.iterations_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.boosters_:
            raise ModelError("xgboost is not fitted")
        x = np.ascontiguousarray(x, np.float32)
        return np.column_stack([b.inplace_predict(x) for b in self.boosters_]).astype(np.float64)

    def feature_importance(self, names: list[str]) -> dict[str, float]:
        """Total gain per feature, summed over horizons."""
        out = dict.fromkeys(names, 0.0)
        for booster in self.boosters_:
            for key, gain in booster.get_score(importance_type="total_gain").items():
                out[names[int(key[1:])]] += float(gain)
        return out

    def to_onnx(self) -> bytes:
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        if not self.boosters_ or self.n_features_ is None:
            raise ModelError("xgboost is not fitted")
        graphs: list[onnx.ModelProto] = []
        for booster in self.boosters_:
            graphs.append(
                convert_xgboost(
                    booster,
                    initial_types=[("input", FloatTensorType([None, self.n_features_]))],
                    target_opset=15,
                )
            )
        return stack_horizons(graphs, self.n_features_).SerializeToString()


class LightGBMModel:
    """One ``lightgbm.Booster`` per horizon; tries ``device_type="gpu"`` when asked and present."""

    name = "lightgbm"
    kind: Kind = "tabular"

    def __init__(
        self, config: LightGBMConfig | None = None, runtime: RuntimeConfig | None = None
    ) -> None:
        self.config = config or LightGBMConfig()
        self.runtime = runtime or RuntimeConfig()
        cfg = self.config
        self.device = ("gpu" if cuda_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.params: dict[str, Any] = {
            "objective": "regression",
            "num_leaves": cfg.num_leaves,
            "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_data_in_leaf,
            "feature_fraction": cfg.feature_fraction,
            "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": 1,
            "seed": self.runtime.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "device_type": self.device,
        }
        if self.runtime.n_threads is not None:
            self.params["num_threads"] = self.runtime.n_threads
        self.boosters_: list[Any] = []
        # trees per horizon that early stopping chose: what ``refit`` trains
        self.iterations_: list[int] = []
        self.n_features_: int | None = None
        # (the training array, its binned Dataset, the validation Dataset) while fitting
        self._data: tuple[Any, Any, Any] | None = None

    def _booster(
        self,
        x: np.ndarray,
        y: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        rounds: int,
        sections: CrossSections | None = None,
    ) -> Any:
        import lightgbm as lgb

        if self._data is None or self._data[0] is not x:
            # binned once, shared by every horizon's booster (only the label changes)
            train = lgb.Dataset(x, label=y, free_raw_data=False)
            valid = None if val is None else lgb.Dataset(val[0], val[1], reference=train)
            self._data = (x, train, valid)
        _x, train, valid = self._data
        train.set_label(y)
        if val is None or valid is None:
            return lgb.train(self.params, train, num_boost_round=rounds)
        valid.set_label(val[1])
        params, ranked = dict(self.params), dict[str, Any]()
        if sections is not None:
            outcome = val[1]
            params["metric"] = "None"

            def rank_ic(preds: np.ndarray, _data: Any) -> tuple[str, float, bool]:
                return "rank_ic", mean_rank_ic(preds, outcome, sections), True

            ranked = {"feval": rank_ic}
        booster = lgb.train(
            params,
            train,
            num_boost_round=rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
            **ranked,
        )
        best = booster.best_iteration or booster.num_trees()
        # keep only the trees early stopping chose: native and ONNX then agree
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def fit(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        val_groups: np.ndarray | None = None,
    ) -> LightGBMModel:
        """One booster per horizon, early-stopped on ``x_val`` (on its mean daily rank IC when
        ``val_groups`` dates its rows)."""
        return self._train(x_train, y_train, (x_val, y_val), None, val_groups)

    def refit(self, x: np.ndarray, y: np.ndarray) -> LightGBMModel:
        """Fresh boosters on ``x``/``y`` with the tree counts ``fit`` chose per horizon."""
        if not self.iterations_:
            raise ModelError("lightgbm: refit needs the iterations chosen by fit")
        return LightGBMModel(self.config, self.runtime)._train(x, y, None, self.iterations_)

    def _train(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        rounds: list[int] | None,
        val_groups: np.ndarray | None = None,
    ) -> LightGBMModel:
        import lightgbm as lgb

        self.n_features_ = int(x_train.shape[1])
        self.boosters_ = []
        sections = None if val_groups is None else CrossSections.of(val_groups)
        x_train = np.ascontiguousarray(x_train, np.float32)
        for h in range(y_train.shape[1]):
            y_val = None if val is None else (val[0], val[1][:, h])
            n = self.config.n_estimators if rounds is None else rounds[h]
            try:
                booster = self._booster(x_train, y_train[:, h], y_val, n, sections)
            except lgb.basic.LightGBMError as exc:
                if self.params["device_type"] == "cpu":
                    raise ModelError(f"lightgbm failed: {exc}") from exc
                # a wheel without GPU support: CPU gives the same model family, just slower
                logger.warning("lightgbm %s unavailable (%s); using cpu", self.device, exc)
                self.params["device_type"] = self.device = "cpu"
                self._data = None
                booster = self._booster(x_train, y_train[:, h], y_val, n, sections)
            self.boosters_.append(booster)
        self._data = None
        self.iterations_ = [int(b.num_trees()) for b in self.boosters_]
        logger.info("lightgbm trees per horizon: %s", self.iterations_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.boosters_:
            raise ModelError("lightgbm is not fitted")
        x = np.ascontiguousarray(x, np.float32)
        return np.column_stack([b.predict(x) for b in self.boosters_]).astype(np.float64)

    def feature_importance(self, names: list[str]) -> dict[str, float]:
        """Total gain per feature, summed over horizons."""
        total = np.sum(
            [b.feature_importance(importance_type="gain") for b in self.boosters_], axis=0
        )
        return {n: float(v) for n, v in zip(names, total, strict=True)}

    def to_onnx(self) -> bytes:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        if not self.boosters_ or self.n_features_ is None:
            raise ModelError("lightgbm is not fitted")
        graphs = [
            convert_lightgbm(
                booster,
                initial_types=[("input", FloatTensorType([None, self.n_features_]))],
                target_opset=15,
                zipmap=False,
            )
            for booster in self.boosters_
        ]
        return stack_horizons(graphs, self.n_features_).SerializeToString()
