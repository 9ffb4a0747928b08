"""The LSTM's GPU loop, on a CUDA device (skipped without one: CI has none).

Run on a GPU host with ``pytest --noconftest tests/model/test_lstm_cuda.py`` (the suite's
conftest starts local servers this file does not need).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stockml.model_config import LSTMConfig, RuntimeConfig  # noqa: E402
from stockml.models import LSTMModel  # noqa: E402
from stockml.models.onnx_utils import run_onnx  # noqa: E402
from stockml.models.sequences import WindowedRows  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data() -> tuple[WindowedRows, np.ndarray, WindowedRows, np.ndarray]:
    """12 symbols x 400 rows of 53 features, windows of 60, a learnable 2-horizon target."""
    rng = np.random.default_rng(1)
    windows = WindowedRows.from_blocks(
        [rng.normal(size=(400, 53)).astype(np.float32) for _ in range(12)], 60
    )
    x = np.asarray(windows)
    y = np.stack([x[:, -1, 0] * 0.01, x[:, -3:, 1].mean(axis=1) * 0.01], axis=1)
    cut = int(len(windows) * 0.8)
    return windows[:cut], y[:cut], windows[cut:], y[cut:]


def _model(batch: int = 256, seed: int = 3) -> LSTMModel:
    return LSTMModel(
        LSTMConfig(hidden_size=32, num_layers=1, max_epochs=3, patience=5, batch_size=batch),
        RuntimeConfig(seed=seed, device="cuda"),
    )


def _syncs(batch: int, data) -> tuple[int, LSTMModel]:  # type: ignore[no-untyped-def]
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = _model(batch).fit(*data)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught), model


def test_the_loop_waits_for_the_device_per_epoch_not_per_batch(data) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the same data in batches of 64 (52 a epoch) and of 256 (13 a epoch)
    _model().fit(*data)  # warm-up: CUDA context, cuDNN plans
    # WHEN both fit 3 epochs with CUDA's sync debugging on
    small, fitted = _syncs(64, data)
    large, _ = _syncs(256, data)
    # THEN they synchronise equally often (uploads, one loss read and one shuffle per epoch,
    # the weights back to the CPU): no synchronisation scales with the batches
    assert small == large, (small, large)
    assert large < 52
    # AND it learnt (fp16 LSTM under autocast, with loss scaling)
    assert fitted.history_[-1]["val_loss"] < fitted.history_[0]["val_loss"]


def test_same_seed_same_predictions_and_onnx_parity_on_the_cpu(data) -> None:  # type: ignore[no-untyped-def]
    # GIVEN two fits with one seed on the GPU
    fit_x, fit_y, val_x, val_y = data
    first = _model(seed=7).fit(fit_x, fit_y, val_x, val_y)
    second = _model(seed=7).fit(fit_x, fit_y, val_x, val_y)
    # WHEN / THEN they predict the same, and the exported graph matches the native CPU model
    native = first.predict(val_x)
    np.testing.assert_array_equal(native, second.predict(val_x))
    assert np.abs(run_onnx(first.to_onnx(), np.asarray(val_x)) - native).max() <= 1e-4
