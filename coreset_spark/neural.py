"""A small neural network (PyTorch MLP) that trains with coreset weights, as a scikit-learn estimator.

The loss is the weighted mean, sum_i w_i loss_i / sum_i w_i, estimated on each mini-batch as
sum_b w_b loss_b / (|b| mean(w)), so the scale of the weights (they sum to the rows they stand
for) changes nothing and L1 / L2 strengths mean the same on a coreset as on the full data.
Options: hidden layer sizes, ReLU or tanh, L1 and L2 penalties, gradient-norm clipping, Xavier or
He (Kaiming) initialisation, Adam. Deterministic for a given ``random_state`` on CPU.
Needs the ``torch`` extra (``pip install 'coreset_spark[torch]'``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2)); y = (x[:, 0] * x[:, 1] > 0).astype(int)
>>> model = TorchMLPClassifier(hidden=(16,), epochs=60, random_state=0).fit(x, y, sample_weight=np.full(400, 25.0))
>>> float((model.predict(x) == y).mean()) > 0.9
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

INITS = ("xavier", "he")
ACTIVATIONS = ("relu", "tanh")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is in the torch extra
        raise ImportError("the PyTorch MLP needs torch: pip install 'coreset_spark[torch]'") from exc
    return torch


class _TorchMLP(BaseEstimator):
    """Shared fitting loop of the classifier and the regressor."""

    def __init__(self, hidden: Sequence[int] = (64, 32), activation: str = "relu", l1: float = 0.0,
                 l2: float = 1e-4, clip_norm: float | None = 5.0, init: str = "he", learning_rate: float = 1e-2,
                 epochs: int = 30, batch_size: int = 256, random_state: int = 0) -> None:
        self.hidden = hidden
        self.activation = activation
        self.l1 = l1
        self.l2 = l2
        self.clip_norm = clip_norm
        self.init = init
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state

    def _check(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is unknown; use one of {INITS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is unknown; use one of {ACTIVATIONS}")
        if self.l1 < 0 or self.l2 < 0:
            raise ValueError(f"l1={self.l1!r} and l2={self.l2!r} must be non-negative")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs!r} and batch_size={self.batch_size!r} must be positive")

    def _network(self, n_in: int, n_out: int) -> Any:
        torch = _torch()
        layers: list[Any] = []
        width = n_in
        for h in self.hidden:
            layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU() if self.activation == "relu" else torch.nn.Tanh()]
            width = int(h)
        layers.append(torch.nn.Linear(width, n_out))
        net = torch.nn.Sequential(*layers)
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                if self.init == "xavier":
                    torch.nn.init.xavier_uniform_(layer.weight)
                else:
                    torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
        return net

    def _fit(self, x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, n_out: int, loss_name: str) -> None:
        self._check()
        torch = _torch()
        torch.manual_seed(self.random_state)
        x = np.asarray(x, dtype=np.float32)
        w = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
        if np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise ValueError("sample_weight must be finite, non-negative and not all zero")
        w = (w / w.mean()).astype(np.float32)  # scale-free: a weighted mean loss
        net = self._network(x.shape[1], n_out)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        tt = torch.from_numpy(target)
        loss_fn = (torch.nn.CrossEntropyLoss(reduction="none") if loss_name == "cross_entropy"
                   else torch.nn.MSELoss(reduction="none"))
        generator = torch.Generator().manual_seed(self.random_state)
        weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), self.batch_size):
                idx = order[start:start + self.batch_size]
                out = net(xt[idx])
                per_row = loss_fn(out.squeeze(-1) if loss_name == "mse" else out, tt[idx])
                loss = (wt[idx] * per_row).mean()
                if self.l2:
                    loss = loss + self.l2 * sum((p * p).sum() for p in weights)
                if self.l1:
                    loss = loss + self.l1 * sum(p.abs().sum() for p in weights)
                optimiser.zero_grad()
                loss.backward()
                if self.clip_norm:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), self.clip_norm)
                optimiser.step()
        self.network_ = net.eval()
        self.n_features_in_ = x.shape[1]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            return self.network_(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(np.float64)


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """A weighted PyTorch MLP classifier (cross-entropy, softmax output); see the module docstring."""

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> TorchMLPClassifier:
        """Fit on (x, y) with optional ``sample_weight``."""
        self.classes_, index = np.unique(np.asarray(y), return_inverse=True)
        self._fit(x, index.astype(np.int64), sample_weight, len(self.classes_), "cross_entropy")
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        logits = self._forward(x)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class."""
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """A weighted PyTorch MLP regressor (squared error); the target is standardised internally."""

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> TorchMLPRegressor:
        """Fit on (x, y) with optional ``sample_weight``."""
        y = np.asarray(y, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.y_mean_ = float(np.average(y, weights=w))
        self.y_scale_ = float(np.sqrt(np.average((y - self.y_mean_) ** 2, weights=w))) or 1.0
        self._fit(x, ((y - self.y_mean_) / self.y_scale_).astype(np.float32), sample_weight, 1, "mse")
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted values."""
        return self._forward(x)[:, 0] * self.y_scale_ + self.y_mean_
