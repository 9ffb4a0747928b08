"""An LSTM over windows of past scaled feature rows with a multi-horizon head (torch).

Seeded and deterministic: the same data and seed give the same weights on one device. Uses
CUDA when torch sees it (``device="auto"``), the CPU otherwise. Early stopping keeps the
weights of the epoch with the lowest validation loss; ``refit`` trains a fresh network on more
data for the same number of optimiser steps, without a validation slice.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np

from stockml.errors import ModelError
from stockml.model_config import LSTMConfig, RuntimeConfig
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

    def __init__(self, config: LSTMConfig | None = None, runtime: RuntimeConfig | None = None):
        self.config = config or LSTMConfig()
        self.runtime = runtime or RuntimeConfig()
        self.net_ = None
        self.window_: int | None = None
        self.n_features_: int | None = None
        # optimiser steps up to the end of the epoch with the best validation loss: what
        # ``refit`` runs (the same optimisation budget on more rows: more epochs would
        # overfit the larger set further than validation chose)
        self.steps_: int | None = None
        self.history_: list[dict[str, float]] = []

    def _device(self) -> str:
        import torch

        if self.runtime.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.runtime.device

    def fit(
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> LSTMModel:
        """Train with early stopping on ``x_val``; keeps the weights of the best epoch."""
        return self._train(x_train, y_train, (x_val, y_val), None)

    def refit(self, x: np.ndarray, y: np.ndarray) -> LSTMModel:
        """A fresh LSTM trained on ``x``/``y`` for exactly the optimiser steps ``fit`` chose."""
        if self.steps_ is None:
            raise ModelError("lstm: refit needs the steps chosen by fit")
        return LSTMModel(self.config, self.runtime)._train(x, y, None, self.steps_)

    def _train(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        max_steps: int | None,
    ) -> LSTMModel:
        """Early-stopped epochs on ``val``, or (``val`` None) exactly ``max_steps`` steps."""
        import torch

        cfg = self.config
        if x_train.ndim != 3:
            raise ModelError(f"lstm wants [n, window, features]; got shape {x_train.shape}")
        if self.runtime.n_threads is not None:
            torch.set_num_threads(self.runtime.n_threads)
        device = self._device()
        # reproducibility: one seed for init and batch order, deterministic kernels
        torch.manual_seed(self.runtime.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.window_, self.n_features_ = int(x_train.shape[1]), int(x_train.shape[2])
        net = _network(
            self.n_features_, cfg.hidden_size, cfg.num_layers, cfg.dropout, y_train.shape[1]
        ).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
        loss_fn = torch.nn.MSELoss()
        # returns are ~1e-2: scale targets to unit size so Adam's steps fit, undo it in the head
        scale = float(np.nanstd(y_train)) or 1.0
        xt = torch.as_tensor(np.ascontiguousarray(x_train, np.float32), device=device)
        yt = torch.as_tensor(np.asarray(y_train, np.float32) / scale, device=device)
        if val is not None:
            xv = torch.as_tensor(np.ascontiguousarray(val[0], np.float32), device=device)
            yv = torch.as_tensor(np.asarray(val[1], np.float32) / scale, device=device)
        generator = torch.Generator().manual_seed(self.runtime.seed)
        best_loss, best_state, best_steps, stale = float("inf"), None, 0, 0
        steps, epoch = 0, 0
        self.history_ = []
        while epoch < cfg.max_epochs if val is not None else steps < (max_steps or 0):
            net.train()
            order = torch.randperm(len(xt), generator=generator).to(device)
            total, seen = 0.0, 0
            for start in range(0, len(xt), cfg.batch_size):
                if val is None and steps >= (max_steps or 0):
                    break
                idx = order[start : start + cfg.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
                steps += 1
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            record = {"epoch": epoch, "steps": steps, "train_loss": total / max(seen, 1)}
            epoch += 1
            if val is None:
                self.history_.append(record)
                continue
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xv), yv))
            self.history_.append({**record, "val_loss": val_loss})
            if val_loss < best_loss - 1e-9:
                best_loss, best_steps, stale = val_loss, steps, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.steps_ = best_steps if val is not None else steps
        with torch.no_grad():
            # fold the target scale into the head: the exported graph outputs raw log returns
            net.head.weight.mul_(scale)
            net.head.bias.mul_(scale)
        self.net_ = net.to("cpu").eval()
        logger.info(
            "lstm: %d epochs, %d steps on %s (kept %d steps)%s",
            len(self.history_),
            steps,
            device,
            self.steps_,
            "" if val is None else f", best val loss {best_loss:.4f}",
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
