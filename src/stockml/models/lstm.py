"""An LSTM over windows of past scaled feature rows with a multi-horizon head (torch).

Seeded and deterministic: the same data and seed give the same weights on one device. Uses
CUDA when torch sees it (``device="auto"``), the CPU otherwise. Early stopping keeps the
weights of the epoch with the lowest validation loss.

One global model over a universe: the windows of every symbol are one training set, batched
across symbols (:class:`~stockml.models.sequences.WindowedRows` keeps them as one feature
matrix plus window indices). On a GPU the matrix is uploaded once, batches are gathered on
the device, the forward pass runs in bf16 and the loop never waits for the device within an
epoch: what makes a GPU worth having for a model this small.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import numpy as np

from stockml.errors import ModelError
from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Kind
from stockml.models.sequences import WindowedRows

logger = logging.getLogger(__name__)


def _network(n_features: int, hidden: int, layers: int, dropout: float, horizon: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class LSTMNet(nn.Module):
        """LSTM layers, then a linear head on the last time step: one output per horizon."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(
                n_features,
                hidden,
                num_layers=layers,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
            )
            self.head = nn.Linear(hidden, horizon)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :])

    return LSTMNet()


# windows per forward pass when nothing is learnt (validation loss, predict)
_EVAL_BATCH = 8192


class _DeviceWindows:
    """Windows and targets on the training device: the feature rows uploaded once."""

    def __init__(
        self, windows: WindowedRows, y: np.ndarray, device: str, rows: Any | None = None
    ) -> None:
        import torch

        self.rows = (
            rows
            if rows is not None
            else torch.as_tensor(np.ascontiguousarray(windows.rows, np.float32), device=device)
        )
        self.source = windows.rows
        self.ends = torch.as_tensor(windows.ends, device=device)
        self.offsets = torch.as_tensor(windows.offsets(), device=device)
        self.y = torch.as_tensor(np.asarray(y, np.float32), device=device)

    def same_rows(self, windows: WindowedRows) -> Any | None:
        """The uploaded rows when ``windows`` index the same matrix (no second upload)."""
        return self.rows if windows.rows is self.source else None

    def batch(self, idx: Any) -> tuple[Any, Any]:
        """The windows ``[b, window, F]`` and targets of samples ``idx``, gathered on the device."""
        return self.rows[self.ends[idx, None] + self.offsets], self.y[idx]


def _squared_error_sum(net: Any, data: _DeviceWindows, batch: int) -> Any:
    """Sum of squared errors over ``data`` (a device scalar: no host sync)."""
    import torch

    net.eval()
    total = torch.zeros((), device=data.y.device)
    with torch.no_grad():
        for start in range(0, len(data.ends), batch):
            idx = slice(start, start + batch)
            x, y = data.rows[data.ends[idx, None] + data.offsets], data.y[idx]
            with _autocast(str(data.y.device)):
                out = net(x)
            total += torch.nn.functional.mse_loss(out.float(), y, reduction="sum")
    return total


def _autocast(device: str) -> Any:
    """bf16 autocast on CUDA (tensor cores, half the memory traffic); nothing on the CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _state(net: Any) -> dict[str, Any]:
    """A copy of the weights on their device (no host round trip)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class LSTMModel:
    """Sequence model: ``[batch, window, n_features]`` -> ``[batch, H]`` log returns."""

    name = "lstm"
    kind: Kind = "sequence"

    def __init__(
        self,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        max_epochs: int = 30,
        patience: int = 5,
        seed: int = 42,
        device: str = "auto",
        n_threads: int | None = None,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.net_ = None
        self.window_: int | None = None
        self.n_features_: int | None = None
        self.history_: list[dict[str, float]] = []

    def _device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def fit(
        self,
        x_train: np.ndarray | WindowedRows,
        y_train: np.ndarray,
        x_val: np.ndarray | WindowedRows,
        y_val: np.ndarray,
    ) -> LSTMModel:
        """Fit on windows ``[n, window, F]`` (an array or :class:`WindowedRows`).

        The feature rows go to the device ONCE (one tensor of every symbol's rows); each
        batch's windows are gathered there by index, never materialised on the host. On CUDA
        the forward pass runs under bf16 autocast (cuDNN's LSTM itself in float16, with loss
        scaling); the epoch's losses are summed on the device and read back once per epoch
        (early stopping needs them), never per batch.
        """
        import torch

        try:
            train, val = WindowedRows.of(x_train), WindowedRows.of(x_val)
        except ValueError as exc:
            raise ModelError(f"lstm wants [n, window, features]: {exc}") from exc
        if self.n_threads is not None:
            torch.set_num_threads(self.n_threads)
        device = self._device()
        # reproducibility: one seed for init and batch order, deterministic kernels
        torch.manual_seed(self.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.window_, self.n_features_ = train.window, int(train.rows.shape[1])
        net = _network(
            self.n_features_, self.hidden_size, self.num_layers, self.dropout, y_train.shape[1]
        ).to(device)
        cuda = device.startswith("cuda")
        # fused Adam on CUDA: one kernel per step for all parameters, no host round trips
        optimizer = torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, fused=True if cuda else None
        )
        # under autocast PyTorch runs cuDNN's LSTM in float16 whatever the autocast dtype:
        # scale the loss against gradient underflow (with fused Adam the scaler's inf check
        # and step skipping stay on the device: still no host sync)
        scaler = torch.amp.GradScaler("cuda") if cuda else None
        # returns are ~1e-2: scale targets to unit size so Adam's steps fit, undo it in the head
        scale = float(np.nanstd(y_train)) or 1.0
        fit_data = _DeviceWindows(train, y_train / scale, device)
        val_data = _DeviceWindows(val, y_val / scale, device, rows=fit_data.same_rows(val))
        generator = torch.Generator().manual_seed(self.seed)
        best_loss, best_state, stale = float("inf"), _state(net), 0
        self.history_ = []
        for epoch in range(self.max_epochs):
            net.train()
            # the order comes from a CPU generator: the same batches on every device
            order = torch.randperm(len(train), generator=generator).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, len(train), self.batch_size):
                idx = order[start : start + self.batch_size]
                x, y = fit_data.batch(idx)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device):
                    out = net(x)
                loss = torch.nn.functional.mse_loss(out.float(), y)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                total += loss.detach() * len(idx)
            val_sum = _squared_error_sum(net, val_data, max(self.batch_size, _EVAL_BATCH))
            # one host sync per epoch: both losses at once
            train_loss, val_loss = torch.stack(
                [total / len(train), val_sum / max(val_data.y.numel(), 1)]
            ).tolist()
            self.history_.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best_loss - 1e-9:
                best_loss, best_state, stale = val_loss, _state(net), 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        net.load_state_dict(best_state)
        with torch.no_grad():
            # fold the target scale into the head: the exported graph outputs raw log returns
            net.head.weight.mul_(scale)
            net.head.bias.mul_(scale)
        self.net_ = net.to("cpu").eval()
        logger.info(
            "lstm: %d epochs on %s, %d windows, best val loss %.4f",
            len(self.history_),
            device,
            len(train),
            best_loss,
        )
        return self

    def predict(self, x: np.ndarray | WindowedRows) -> np.ndarray:
        """Predicted log returns ``[n, H]`` (float64), on the CPU in float32, in chunks.

        The CPU in float32 is what the ONNX export is checked against; chunks bound memory
        when ``x`` is a universe's windows.
        """
        import torch

        if self.net_ is None:
            raise ModelError("lstm is not fitted")
        windows = WindowedRows.of(x)
        outputs = [np.empty((0, self.net_.head.out_features), np.float32)]
        with torch.no_grad():
            for start in range(0, len(windows), _EVAL_BATCH):
                chunk = windows.gather(start, start + _EVAL_BATCH)
                outputs.append(self.net_(torch.from_numpy(chunk)).numpy())
        return np.concatenate(outputs).astype(np.float64)

    def to_onnx(self) -> bytes:
        import torch

        if self.net_ is None or self.window_ is None or self.n_features_ is None:
            raise ModelError("lstm is not fitted")
        example = torch.zeros(2, self.window_, self.n_features_)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # the TorchScript exporter warns about its own future; it gives one ONNX LSTM node
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self.net_,
                (example,),
                buffer,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        return buffer.getvalue()
