"""Windows by reference (WindowedRows) and the LSTM loop that gathers them on its device."""

from __future__ import annotations

import numpy as np
import pytest

from stockml.model_config import LSTMConfig, RuntimeConfig
from stockml.models import LSTMModel
from stockml.models.sequences import WindowedRows


@pytest.fixture(scope="module")
def blocks() -> list[np.ndarray]:
    """Three 'symbols' of 9, 4 and 7 rows x 3 features; every value distinct."""
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, 3)).astype(np.float32) for n in (9, 4, 7)]


def _windows_by_hand(blocks: list[np.ndarray], window: int) -> np.ndarray:
    out = [b[end - window + 1 : end + 1] for b in blocks for end in range(window - 1, len(b))]
    return np.stack(out)


def test_windows_by_reference_equal_windows_by_hand_and_never_cross_symbols(
    blocks: list[np.ndarray],
) -> None:
    # GIVEN / WHEN windows of 5 rows over three symbols (one shorter than the window)
    windows = WindowedRows.from_blocks(blocks, 5)
    # THEN they are every full window of each symbol, in order, and only those
    expected = _windows_by_hand(blocks, 5)
    assert windows.shape == expected.shape == (5 + 0 + 3, 5, 3)
    np.testing.assert_array_equal(np.asarray(windows), expected)
    # AND the matrix is held once, not window times
    assert windows.rows.shape == (20, 3)


def test_indexing_selects_samples_and_shares_the_matrix(blocks: list[np.ndarray]) -> None:
    # GIVEN
    windows = WindowedRows.from_blocks(blocks, 3)
    expected = _windows_by_hand(blocks, 3)
    mask = np.arange(len(windows)) % 3 == 1
    # WHEN / THEN a mask, a slice, positions and a negative slice select like an array's
    for key in (mask, slice(2, 6), np.array([7, 0, 3]), slice(-1, None)):
        part = windows[key]
        assert part.rows is windows.rows
        np.testing.assert_array_equal(np.asarray(part), expected[key])
    np.testing.assert_array_equal(
        np.ascontiguousarray(windows[:2], np.float64), expected[:2].astype(np.float64)
    )
    # AND an array of windows converts to the same thing
    np.testing.assert_array_equal(np.asarray(WindowedRows.of(expected)), expected)
    with pytest.raises(ValueError):
        WindowedRows(windows.rows, np.array([1]), 3)  # a window before the first row


def _lstm(seed: int = 5) -> LSTMModel:
    return LSTMModel(
        LSTMConfig(hidden_size=6, num_layers=1, max_epochs=3, patience=3, batch_size=16),
        RuntimeConfig(seed=seed, device="cpu", n_threads=1),
    )


@pytest.fixture(scope="module")
def universe_windows() -> tuple[WindowedRows, np.ndarray]:
    """12 symbols x 40 rows of 4 features, windows of 8, and a learnable target."""
    rng = np.random.default_rng(1)
    blocks = [rng.normal(size=(40, 4)).astype(np.float32) for _ in range(12)]
    windows = WindowedRows.from_blocks(blocks, 8)
    x = np.asarray(windows)
    y = np.stack([x[:, -1, 0] * 0.01, x[:, -3:, 1].mean(axis=1) * 0.01], axis=1)
    return windows, y + rng.normal(size=y.shape) * 0.001


def test_the_lstm_learns_the_same_from_windows_by_reference_as_from_arrays(
    universe_windows: tuple[WindowedRows, np.ndarray],
) -> None:
    # GIVEN the same samples as windows by reference and as a materialised array
    windows, y = universe_windows
    fit, val = windows[:300], windows[300:]
    # WHEN two models with the same seed fit each
    by_reference = _lstm().fit(fit, y[:300], val, y[300:])
    by_array = _lstm().fit(np.asarray(fit), y[:300], np.asarray(val), y[300:])
    # THEN the weights and predictions are bit-identical (same batches, same gathered rows)
    for a, b in zip(
        by_reference.net_.state_dict().values(), by_array.net_.state_dict().values(), strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(by_reference.predict(val), by_array.predict(np.asarray(val)))
    assert by_reference.history_ == by_array.history_
    # AND it learnt something: validation loss below the first epoch's
    assert by_reference.history_[-1]["val_loss"] < by_reference.history_[0]["val_loss"]


def test_the_training_loop_reads_the_device_once_per_epoch_not_per_batch(
    universe_windows: tuple[WindowedRows, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a loop of 19 batches per epoch, and every way the loop's code reads a tensor back
    # to the host counted (torch's own CPU-side bookkeeping, e.g. Adam's step count, aside)
    import sys

    import torch

    windows, y = universe_windows
    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            if sys._getframe(1).f_code.co_filename.endswith("stockml/models/lstm.py"):
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    model = _lstm()
    # WHEN it fits 3 epochs of 300 windows in batches of 16
    model.fit(windows[:300], y[:300], windows[300:], y[300:])
    # THEN the losses came back once per epoch (plus moving the net to the CPU at the end)
    epochs = len(model.history_)
    assert epochs == 3
    assert reads.count("tolist") == epochs
    assert len(reads) - reads.count("cpu") == epochs, reads


def test_predict_works_in_chunks_and_on_empty_input(
    universe_windows: tuple[WindowedRows, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a fitted model and chunks far smaller than the input
    from stockml.models import lstm

    windows, y = universe_windows
    model = _lstm().fit(windows[:300], y[:300], windows[300:], y[300:])
    whole = model.predict(windows)
    monkeypatch.setattr(lstm, "_EVAL_BATCH", 7)
    # WHEN / THEN chunked predictions equal the one-chunk ones, and nothing in gives nothing out
    np.testing.assert_allclose(model.predict(windows), whole, rtol=1e-6, atol=1e-9)
    assert model.predict(windows[:0]).shape == (0, 2)
