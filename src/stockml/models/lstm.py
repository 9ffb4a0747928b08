"""An LSTM over windows of past scaled feature rows with a multi-horizon head (torch).

Seeded and deterministic: the same data and seed give the same weights on one device. Uses
CUDA when torch sees it (``device="auto"``), the CPU otherwise. Early stopping keeps the
weights of the epoch with the lowest validation loss.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np

from stockml.errors import ModelError
from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Kind

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
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> LSTMModel:
        import torch

        if x_train.ndim != 3:
            raise ModelError(f"lstm wants [n, window, features]; got shape {x_train.shape}")
        if self.n_threads is not None:
            torch.set_num_threads(self.n_threads)
        device = self._device()
        # reproducibility: one seed for init and batch order, deterministic kernels
        torch.manual_seed(self.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.window_, self.n_features_ = int(x_train.shape[1]), int(x_train.shape[2])
        net = _network(
            self.n_features_, self.hidden_size, self.num_layers, self.dropout, y_train.shape[1]
        ).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.MSELoss()
        # returns are ~1e-2: scale targets to unit size so Adam's steps fit, undo it in the head
        scale = float(np.nanstd(y_train)) or 1.0
        xt = torch.as_tensor(np.ascontiguousarray(x_train, np.float32), device=device)
        yt = torch.as_tensor(np.asarray(y_train, np.float32) / scale, device=device)
        xv = torch.as_tensor(np.ascontiguousarray(x_val, np.float32), device=device)
        yv = torch.as_tensor(np.asarray(y_val, np.float32) / scale, device=device)
        generator = torch.Generator().manual_seed(self.seed)
        best_loss, best_state, stale = float("inf"), copy.deepcopy(net.state_dict()), 0
        self.history_ = []
        for epoch in range(self.max_epochs):
            net.train()
            order = torch.randperm(len(xt), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(xt), self.batch_size):
                idx = order[start : start + self.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xv), yv))
            self.history_.append(
                {"epoch": epoch, "train_loss": total / len(xt), "val_loss": val_loss}
            )
            if val_loss < best_loss - 1e-9:
                best_loss, best_state, stale = val_loss, copy.deepcopy(net.state_dict()), 0
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
            "lstm: %d epochs on %s, best val loss %.4f", len(self.history_), device, best_loss
        )
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.net_ is None:
            raise ModelError("lstm is not fitted")
        with torch.no_grad():
            out = self.net_(torch.as_tensor(np.ascontiguousarray(x, np.float32)))
        return out.numpy().astype(np.float64)

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
