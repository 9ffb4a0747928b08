"""An LSTM over windows of past scaled feature rows with a multi-horizon head (torch).

Seeded and deterministic: the same data and seed give the same weights on one device. Uses
CUDA when torch sees it (``device="auto"``), the CPU otherwise. Early stopping keeps the
weights of the epoch with the lowest validation loss; ``refit`` trains a fresh network on more
data for the same number of optimiser steps, without a validation slice.

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
from stockml.model_config import LSTMConfig, RuntimeConfig
from stockml.models.base import ONNX_INPUT, ONNX_OUTPUT, Kind
from stockml.models.sequences import WindowedRows
from stockml.ranking import CrossSections, mean_rank_ic

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


def _predictions(net: Any, data: _DeviceWindows, batch: int) -> np.ndarray:
    """``[n, H]`` forecasts of ``data`` (computed on the device, read back once)."""
    import torch

    net.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(data.ends), batch):
            idx = slice(start, start + batch)
            with _autocast(str(data.y.device)):
                parts.append(net(data.rows[data.ends[idx, None] + data.offsets]).float())
    return torch.cat(parts).cpu().numpy().astype(np.float64)


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
        self,
        x_train: np.ndarray | WindowedRows,
        y_train: np.ndarray,
        x_val: np.ndarray | WindowedRows,
        y_val: np.ndarray,
        val_groups: np.ndarray | None = None,
    ) -> LSTMModel:
        """Fit on windows ``[n, window, F]`` (an array or :class:`WindowedRows`) with early
        stopping on ``x_val``; keeps the weights of the best epoch: the lowest validation
        loss, or with ``val_groups`` (each validation row's date) the highest mean daily rank
        IC, averaged over the horizons.

        The feature rows go to the device ONCE (one tensor of every symbol's rows); each
        batch's windows are gathered there by index, never materialised on the host. On CUDA
        the forward pass runs under bf16 autocast (cuDNN's LSTM itself in float16, with loss
        scaling); the epoch's losses are summed on the device and read back once per epoch
        (early stopping needs them), never per batch.
        """
        return self._train(x_train, y_train, (x_val, y_val), None, val_groups)

    def refit(self, x: np.ndarray | WindowedRows, y: np.ndarray) -> LSTMModel:
        """A fresh LSTM trained on ``x``/``y`` for exactly the optimiser steps ``fit`` chose."""
        if self.steps_ is None:
            raise ModelError("lstm: refit needs the steps chosen by fit")
        return LSTMModel(self.config, self.runtime)._train(x, y, None, self.steps_)

    def _train(
        self,
        x_train: np.ndarray | WindowedRows,
        y_train: np.ndarray,
        val: tuple[np.ndarray | WindowedRows, np.ndarray] | None,
        max_steps: int | None,
        val_groups: np.ndarray | None = None,
    ) -> LSTMModel:
        """Early-stopped epochs on ``val``, or (``val`` None) exactly ``max_steps`` steps."""
        import torch

        cfg = self.config
        try:
            train = WindowedRows.of(x_train)
            val_windows = WindowedRows.of(val[0]) if val is not None else None
        except ValueError as exc:
            raise ModelError(f"lstm wants [n, window, features]: {exc}") from exc
        if self.runtime.n_threads is not None:
            torch.set_num_threads(self.runtime.n_threads)
        device = self._device()
        # reproducibility: one seed for init and batch order, deterministic kernels
        torch.manual_seed(self.runtime.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.window_, self.n_features_ = train.window, int(train.rows.shape[1])
        net = _network(
            self.n_features_, cfg.hidden_size, cfg.num_layers, cfg.dropout, y_train.shape[1]
        ).to(device)
        cuda = device.startswith("cuda")
        # fused Adam on CUDA: one kernel per step for all parameters, no host round trips
        optimizer = torch.optim.Adam(
            net.parameters(), lr=cfg.learning_rate, fused=True if cuda else None
        )
        # under autocast PyTorch runs cuDNN's LSTM in float16 whatever the autocast dtype:
        # scale the loss against gradient underflow (with fused Adam the scaler's inf check
        # and step skipping stay on the device: still no host sync)
        scaler = torch.amp.GradScaler("cuda") if cuda else None
        # returns are ~1e-2: scale targets to unit size so Adam's steps fit, undo it in the head
        scale = float(np.nanstd(y_train)) or 1.0
        fit_data = _DeviceWindows(train, y_train / scale, device)
        val_data = None
        if val is not None and val_windows is not None:
            val_data = _DeviceWindows(
                val_windows, val[1] / scale, device, rows=fit_data.same_rows(val_windows)
            )
        sections = None if val_groups is None else CrossSections.of(val_groups)
        generator = torch.Generator().manual_seed(self.runtime.seed)
        best_loss, best_state, best_steps, stale = float("inf"), None, 0, 0
        steps, epoch = 0, 0
        self.history_ = []
        while epoch < cfg.max_epochs if val is not None else steps < (max_steps or 0):
            net.train()
            # the order comes from a CPU generator: the same batches on every device
            order = torch.randperm(len(train), generator=generator).to(device)
            total = torch.zeros((), device=device)
            seen = 0
            for start in range(0, len(train), cfg.batch_size):
                if val_data is None and steps >= (max_steps or 0):
                    break
                idx = order[start : start + cfg.batch_size]
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
                steps += 1
                total += loss.detach() * len(idx)
                seen += len(idx)
            epoch += 1
            if val_data is None:
                # one host sync per epoch
                train_loss = float((total / max(seen, 1)).item())
                self.history_.append({"epoch": epoch - 1, "steps": steps, "train_loss": train_loss})
                continue
            val_sum = _squared_error_sum(net, val_data, max(cfg.batch_size, _EVAL_BATCH))
            # one host sync per epoch: both losses at once
            train_loss, val_loss = torch.stack(
                [total / max(seen, 1), val_sum / max(val_data.y.numel(), 1)]
            ).tolist()
            record = {
                "epoch": epoch - 1,
                "steps": steps,
                "train_loss": train_loss,
                "val_loss": val_loss,
            }
            criterion = val_loss
            if sections is not None and val is not None:
                # a ranking: the mean daily rank IC of the validation forecasts (higher wins)
                pred = _predictions(net, val_data, max(cfg.batch_size, _EVAL_BATCH))
                ic = float(
                    np.mean(
                        [
                            mean_rank_ic(pred[:, h], val[1][:, h], sections)
                            for h in range(pred.shape[1])
                        ]
                    )
                )
                record["val_rank_ic"] = ic
                criterion = -ic
            self.history_.append(record)
            if criterion < best_loss - 1e-9:
                best_loss, best_steps, stale = criterion, steps, 0
                best_state = _state(net)
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
            "lstm: %d epochs, %d steps on %s, %d windows (kept %d steps)%s",
            len(self.history_),
            steps,
            device,
            len(train),
            self.steps_,
            ""
            if val is None
            else f", best val {'-rank IC' if sections is not None else 'loss'} {best_loss:.4f}",
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
