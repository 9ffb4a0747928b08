"""A REAL small serving bundle for API tests and benchmarks, built from the embedded data.

- bars: ``^GSPC`` from ``arch.data.sp500`` and ``MSFT`` from ``pmdarima.datasets.load_msft``
  (the last ``rows`` sessions of each);
- features: the shared feature library's ``build_features`` with the default config (^GSPC
  as the market context, no news), in the feature frame contract;
- models: a scikit-learn Ridge (all horizons at once) converted with skl2onnx as the
  ``tabular`` model, and a tiny torch LSTM exported with ``torch.onnx.export`` as the
  ``sequence`` model, both fitted in a few hundred milliseconds on the training slice;
- an ensemble of the two (one ONNX graph holding both, ``compose_weighted``) with weights,
  conformal intervals and metrics from a held-out validation slice.

Training libraries are imported inside the functions: the serving path never sees them.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stockml.bundle import (
    FeatureDistribution,
    FeatureSpec,
    Manifest,
    ModelEntry,
    champion_key,
    write_bundle,
)
from stockml.features import build_features, feature_columns
from stockml.features.config import FeatureConfig
from stockml.features.pipeline import write_windows
from stockml.sessions import SessionTable

CONFIG = FeatureConfig()  # the code defaults (= configs/feature_config.yaml)
FEATURES = feature_columns(CONFIG)
HORIZON = CONFIG.horizon
WINDOW = 10
SYMBOLS = ["MSFT", "^GSPC"]


@dataclass(frozen=True)
class BuiltBundle:
    folder: Path
    manifest: Manifest
    features: pd.DataFrame  # every symbol's feature frame, as written to the store
    bars: pd.DataFrame | None = None  # the raw bars the features came from (raw/ in the store)


def embedded_bars(rows: int = 400) -> pd.DataFrame:
    """The last ``rows`` sessions of MSFT (pmdarima) and ^GSPC (arch), in the bar schema."""
    from arch.data import sp500
    from pmdarima.datasets import load_msft

    spx = sp500.load().tail(rows)
    spx_bars = pd.DataFrame(
        {
            "symbol": "^GSPC",
            "date": spx.index,
            "open": spx["Open"],
            "high": spx["High"],
            "low": spx["Low"],
            "close": spx["Close"],
            "adj_close": spx["Adj Close"],
            "volume": spx["Volume"].astype(float),
        }
    )
    msft = load_msft().tail(rows)
    msft_bars = pd.DataFrame(
        {
            "symbol": "MSFT",
            "date": pd.to_datetime(msft["Date"]),
            "open": msft["Open"],
            "high": msft["High"],
            "low": msft["Low"],
            "close": msft["Close"],
            # no dividend adjustment in this source: adj_close is the close
            "adj_close": msft["Close"],
            "volume": msft["Volume"].astype(float),
        }
    )
    out = pd.concat([msft_bars, spx_bars], ignore_index=True)
    out["source"] = "embedded"
    return out.reset_index(drop=True)


def make_features(bars: pd.DataFrame, config: FeatureConfig | None = None) -> pd.DataFrame:
    """The feature frame of ``bars`` from the shared feature library (^GSPC as the market).

    The same ``build_features`` fills the store's ``features/`` table in production, so the
    API tests read exactly what serving reads.
    """
    market = bars[bars["symbol"] == "^GSPC"]
    return build_features(bars, market=market, news=None, config=config or CONFIG)


def _windows(x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(window - 1, len(x))
    return np.stack([x[i - window + 1 : i + 1] for i in idx]), y[idx]


def build_bundle(
    folder: Path, rows: int = 400, version: str = "v-test-1", seed: int = 0
) -> BuiltBundle:
    """Fit the two models on the embedded data and write a verified bundle into ``folder``."""
    import torch
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import Ridge

    from stockml.evaluation import equity_curves

    torch.manual_seed(seed)
    bars = embedded_bars(rows)
    features = make_features(bars)
    targets = [f"target_{h}" for h in range(1, HORIZON + 1)]
    labelled = features.dropna(subset=targets)
    # time split per symbol: first 70% train, rest validation
    parts = {s: g for s, g in labelled.groupby("symbol")}
    cut = {s: int(len(g) * 0.7) for s, g in parts.items()}
    train = pd.concat([g.iloc[: cut[s]] for s, g in parts.items()])
    spec = FeatureSpec.fit(
        train, FEATURES, window=WINDOW, horizon=HORIZON, feature_config=CONFIG.model_dump()
    )

    active = [n for n in FEATURES if n not in spec.inactive]

    def scaled(frame: pd.DataFrame) -> np.ndarray:
        return spec.transform(frame)

    # tabular: Ridge, all horizons as one multi-output regression
    ridge = Ridge(alpha=10.0).fit(scaled(train), train[targets].to_numpy())
    ridge_onnx = convert_sklearn(
        ridge, initial_types=[("input", FloatTensorType([None, len(FEATURES)]))], target_opset=17
    ).SerializeToString()

    # sequence: a tiny LSTM on windows of WINDOW rows
    class TinyLstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(len(FEATURES), 8, batch_first=True)
            self.head = torch.nn.Linear(8, HORIZON)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :])

    pairs = [
        _windows(scaled(g.iloc[: cut[s]]), g.iloc[: cut[s]][targets].to_numpy(), WINDOW)
        for s, g in parts.items()
    ]
    xs = [x for x, _ in pairs]
    ys = [y for _, y in pairs]
    x_seq = torch.tensor(np.concatenate(xs), dtype=torch.float32)
    y_seq = torch.tensor(np.concatenate(ys), dtype=torch.float32)
    lstm = TinyLstm()
    opt = torch.optim.Adam(lstm.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(lstm(x_seq), y_seq)
        loss.backward()
        opt.step()
    lstm.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the legacy exporter (fast, no onnxscript) warns about itself and LSTM batch sizes;
        # serving runs batch 1 and the tests check batch > 1 too
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            lstm,
            (x_seq[:1],),
            buf,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    lstm_onnx = buf.getvalue()

    # validation: predictions of both models on the same rows (each row's last WINDOW rows)
    import onnxruntime as ort

    r_sess = ort.InferenceSession(ridge_onnx, providers=["CPUExecutionProvider"])
    l_sess = ort.InferenceSession(lstm_onnx, providers=["CPUExecutionProvider"])
    preds: dict[str, list[np.ndarray]] = {"ridge": [], "lstm": []}
    truth, syms, when = [], [], []
    for s, g in parts.items():
        x_all = scaled(g)
        xw, yw = _windows(x_all, g[targets].to_numpy(), WINDOW)
        keep = np.arange(WINDOW - 1, len(g)) >= cut[s]
        preds["ridge"].append(r_sess.run(None, {"input": x_all[WINDOW - 1 :][keep]})[0])
        preds["lstm"].append(l_sess.run(None, {"input": xw[keep]})[0])
        truth.append(yw[keep])
        syms += [s] * int(keep.sum())
        when.append(g["date"].to_numpy()[WINDOW - 1 :][keep])
    y_val = np.concatenate(truth)
    p = {k: np.concatenate(v).astype(np.float64) for k, v in preds.items()}
    rmse = {k: float(np.sqrt(np.mean((v - y_val) ** 2))) for k, v in p.items()}
    inv = {k: 1.0 / v**2 for k, v in rmse.items()}
    weights = {k: inv[k] / sum(inv.values()) for k in inv}
    p["ensemble"] = sum(w * p[k] for k, w in weights.items())
    p["naive"] = np.zeros_like(y_val)

    def scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
        naive = float(np.sqrt(np.mean(y**2)))
        model = float(np.sqrt(np.mean((pred - y) ** 2)))
        return {
            "rmse": model,
            "mae": float(np.mean(np.abs(pred - y))),
            "rmse_ratio_vs_naive": model / naive,
            "directional_accuracy": float(np.mean(np.sign(pred[:, 0]) == np.sign(y[:, 0]))),
            "n": int(len(y)),
        }

    sym_arr = np.asarray(syms)
    metrics = {
        "pooled": {k: scores(v, y_val) for k, v in p.items()},
        "per_symbol": {
            s: {k: scores(v[sym_arr == s], y_val[sym_arr == s]) for k, v in p.items()}
            for s in parts
        },
    }
    # what training records beside the metrics: the gate's checks and the ensemble's backtest
    ratio = metrics["pooled"]["ensemble"]["rmse_ratio_vs_naive"]
    metrics["gate"] = {
        "passed": ratio < 1.0,
        "checks": [
            {"name": "rmse_ratio_vs_naive", "value": ratio, "threshold": 1.0, "passed": ratio < 1.0}
        ],
    }
    curve = equity_curves(
        p["ensemble"][:, 0], y_val[:, 0], sym_arr, np.concatenate(when), cost_bps=5.0
    )
    metrics["equity_curve"] = {
        "model": "ensemble",
        "dates": [d.date().isoformat() for d in curve.index],
        "strategy": curve["strategy"].tolist(),
        "buy_and_hold": curve["buy_and_hold"].tolist(),
    }
    intervals = {
        k: {
            "level": 0.9,
            "lo": np.quantile(y_val - p[k], 0.05, axis=0).tolist(),
            "hi": np.quantile(y_val - p[k], 0.95, axis=0).tolist(),
        }
        for k in ("ridge", "lstm", "ensemble")
    }
    from stockml.models.onnx_utils import compose_weighted

    ensemble_onnx = compose_weighted(
        [
            (k, onnx_bytes, kind, np.full(HORIZON, weights[k]))
            for k, onnx_bytes, kind in (
                ("ridge", ridge_onnx, "tabular"),
                ("lstm", lstm_onnx, "sequence"),
            )
        ],
        "sequence",
        (WINDOW, len(FEATURES)),
    )
    manifest = write_bundle(
        folder,
        version=version,
        git_commit="0" * 40,
        feature_spec=spec,
        metrics=metrics,
        onnx_models={
            "ridge": (ridge_onnx, ModelEntry("ridge.onnx", "tabular", "input", "variable")),
            "lstm": (lstm_onnx, ModelEntry("lstm.onnx", "sequence", "input", "output")),
            "ensemble": (
                ensemble_onnx,
                ModelEntry("ensemble.onnx", "sequence", "input", "output"),
            ),
        },
        intervals=intervals,
        symbols=SYMBOLS,
        extra={
            "ensemble_weights": weights,
            # as training records them: the baselines' forecasts (drift: the training mean)
            # and the last session learned from
            "baselines": {
                "naive": [0.0] * HORIZON,
                "drift": [float(v) for v in train[targets].mean().to_numpy()],
            },
            "data_window": {"train_end": train["date"].max().date().isoformat()},
        },
        # the monitor's drift reference, as training writes it
        distribution=FeatureDistribution.fit(
            train[active].to_numpy(np.float64), train["date"].to_numpy(), active
        ),
        # as training writes it: from a year before the stalest symbol's last day
        sessions=SessionTable.build(
            features.groupby("symbol")["date"].max().min() - pd.Timedelta(days=366)
        ),
    )
    return BuiltBundle(folder=folder, manifest=manifest, features=features, bars=bars)


def publish(store, built: BuiltBundle, champion: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Upload the bundle to ``<models_prefix>/<version>/``, its raw bars and features (the table
    and, as the feature pipeline writes them, the latest windows) and the champion pointer."""
    store.put_folder(built.folder, f"{store.models_prefix}/{built.manifest.version}")
    if built.bars is not None:
        store.upsert_bars(built.bars)
    store.upsert_table(store.features_prefix, built.features)
    write_windows(store, config=CONFIG)
    if champion:
        store.put_bytes(
            champion_key(store.models_prefix),
            json.dumps({"version": built.manifest.version}).encode(),
        )


def rewrite_bundle(source: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """Copy the bundle in ``source`` to ``dest`` with the files of ``replace`` swapped in,
    and the manifest's sha256 updated: an INTACT bundle with other contents (e.g. a model
    that cannot run), which the checksum check alone would let through."""
    import shutil

    from stockml.bundle import MANIFEST, sha256_bytes

    shutil.copytree(source, dest)
    for name, data in replace.items():
        (dest / name).write_bytes(data)
    manifest = json.loads((dest / MANIFEST).read_text())
    manifest["files"] = {
        name: sha256_bytes((dest / name).read_bytes()) for name in manifest["files"]
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return dest


def swapped_graphs(built: BuiltBundle, dest: Path) -> Path:
    """An intact bundle whose ``ridge.onnx`` holds the LSTM graph and ``lstm.onnx`` the Ridge
    graph: each file is a valid model, but not the one its manifest entry describes."""
    ridge = (built.folder / "ridge.onnx").read_bytes()
    lstm = (built.folder / "lstm.onnx").read_bytes()
    return rewrite_bundle(built.folder, dest, {"ridge.onnx": lstm, "lstm.onnx": ridge})


def narrower_spec(built: BuiltBundle, dest: Path) -> Path:
    """An intact bundle whose feature spec lists one feature fewer than its models take."""
    spec = json.loads((built.folder / "feature_spec.json").read_text())
    for key in ("feature_names", "mean", "std"):
        spec[key] = spec[key][:-1]
    return rewrite_bundle(built.folder, dest, {"feature_spec.json": json.dumps(spec).encode()})
