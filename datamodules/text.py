"""Token sequences for causal language modelling (the GPT, attention and LoRA studies), from a
local text file or from a synthetic task with a planted rule; nothing is downloaded.

Batches are ``(tokens[:, :-1], tokens[:, 1:])``: LongTensors of shape ``(B, block_size)``, the
inputs and the next tokens to predict.

Tasks (sequences of ``block_size + 1`` tokens from a vocabulary of ``vocab_size``):

- ``copy``: the first ``lag`` tokens are uniform at random, then ``x_t = x_{t − lag}``;
- ``permute``: the same with ``x_t = π(x_{t − lag})`` for a fixed random permutation ``π`` of the
  vocabulary (drawn from ``seed``), so the model must learn a token map as well as where to look;
- ``file``: the text of ``path`` as ``char`` tokens (its distinct characters, sorted) or ``byte``
  tokens (256); the first ``1 − val_fraction`` of it for training, the rest for validation, cut
  into consecutive non-overlapping windows.

For the two rules only the first ``lag − 1`` targets are unpredictable, so the lowest possible
mean cross-entropy is ``(lag − 1) / block_size · log(vocab_size)``. ``lag`` defaults to
``(block_size + 1) // 2``: the second half of every sequence repeats (a map of) the first, which
single-layer attention solves by attending ``lag`` tokens back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from sparsify.datamodules.common import SplitDataModule
from sparsify.errors import ConfigError, check_choice, check_counts

Task = Literal["copy", "permute", "file"]
Tokens = Literal["char", "byte"]


class TextDataModule(SplitDataModule):
    """Next-token prediction data with ``vocab_size`` and ``block_size`` attributes.

    Args:
        task: ``"copy"``, ``"permute"`` or ``"file"``.
        path: the text file (``task="file"`` only).
        tokens: ``"char"`` or ``"byte"`` (``task="file"`` only).
        block_size: tokens per input sequence (the model's context must be at least this).
        vocab_size: vocabulary of the synthetic tasks (a file sets its own).
        lag: how far back the planted rule looks (default ``(block_size + 1) // 2``).
        train_sequences, val_sequences: sequences drawn for the synthetic tasks.
        val_fraction: share of the file held out (at its end) for validation.
        batch_size: sequences per batch on each device.
        seed: seed of the synthetic sequences and of the permutation.
        num_workers: passed to the ``DataLoader``s.
    """

    def __init__(
        self,
        task: Task = "copy",
        path: str | None = None,
        tokens: Tokens = "char",
        block_size: int = 64,
        vocab_size: int = 16,
        lag: int | None = None,
        train_sequences: int = 10_000,
        val_sequences: int = 1000,
        val_fraction: float = 0.1,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        check_choice("task", task, Task)
        check_choice("tokens", tokens, Tokens)
        if task == "file" and path is None:
            raise ConfigError("path=None is invalid with task='file': give the text file")
        if task != "file" and path is not None:
            raise ConfigError(
                f"path={path!r} is invalid with task={task!r}: set task=file to train on a file"
            )
        lag = (block_size + 1) // 2 if lag is None else lag
        check_counts(block_size=block_size)
        if task != "file" and not 1 <= lag <= block_size:
            raise ConfigError(f"lag={lag!r} is invalid: must be in [1, block_size={block_size}]")
        if vocab_size < 2:
            raise ConfigError(f"vocab_size={vocab_size!r} is invalid: must be >= 2")
        check_counts(
            train_sequences=train_sequences, val_sequences=val_sequences, batch_size=batch_size
        )
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction={val_fraction!r} is invalid: must be in (0, 1)")
        self.save_hyperparameters()
        self.block_size, self.lag = block_size, lag
        self._vocab_size = 256 if tokens == "byte" else vocab_size
        self._chars: list[str] | None = None
        if task == "file":  # fail at once, before a logger or checkpoint writes anything
            self._check_file()

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens; for ``char`` tokens of a file, read from the file."""
        if self.hparams.task == "file" and self.hparams.tokens == "char":
            return len(self._read_chars())
        return self._vocab_size

    def encode(self, text: str) -> torch.Tensor:
        if self.hparams.tokens == "byte":
            return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
        index = {c: i for i, c in enumerate(self._read_chars())}
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, tokens) -> str:
        tokens = [int(t) for t in tokens]
        if self.hparams.task == "file" and self.hparams.tokens == "char":
            return "".join(self._read_chars()[t] for t in tokens)
        if self.hparams.task == "file":
            return bytes(tokens).decode("utf-8", errors="replace")
        return " ".join(map(str, tokens))

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "val_set"):
            return
        hp = self.hparams
        if hp.task == "file":
            data = self._read_tokens()
            cut = int(len(data) * (1 - hp.val_fraction))
            for name, part in (("training", data[:cut]), ("validation", data[cut:])):
                if len(part) < self.block_size + 1:
                    raise ConfigError(
                        f"path={hp.path!r} is invalid: its {name} part has {len(part)} tokens, "
                        f"fewer than block_size + 1 = {self.block_size + 1}"
                    )
            self.train_set = _Windows(data[:cut], self.block_size)
            self.val_set = _Windows(data[cut:], self.block_size)
            return
        generator = torch.Generator().manual_seed(hp.seed)
        permutation = torch.randperm(hp.vocab_size, generator=generator)
        if hp.task == "copy":
            permutation = torch.arange(hp.vocab_size)
        self.permutation = permutation
        self.train_set = _Sequences(self._planted(hp.train_sequences, generator))
        self.val_set = _Sequences(self._planted(hp.val_sequences, generator))

    def _planted(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` sequences: ``lag`` random tokens, then ``x_t = π(x_{t − lag})``."""
        length, lag = self.block_size + 1, self.lag
        sequences = torch.empty(count, length, dtype=torch.long)
        sequences[:, :lag] = torch.randint(
            0, self.hparams.vocab_size, (count, lag), generator=generator
        )
        for t in range(lag, length):
            sequences[:, t] = self.permutation[sequences[:, t - lag]]
        return sequences

    def _check_file(self) -> Path:
        path = Path(self.hparams.path)
        if not path.is_file():
            found = "a folder" if path.is_dir() else "nothing"
            raise ConfigError(
                f"path={str(path)!r} is invalid: expected a text file, found {found} there"
            )
        return path

    def _read_tokens(self) -> torch.Tensor:
        path = self._check_file()
        if self.hparams.tokens == "byte":
            data = bytearray(path.read_bytes())
            return (
                torch.frombuffer(data, dtype=torch.uint8).long() if data else torch.zeros(0).long()
            )
        return self.encode(path.read_text(encoding="utf-8", errors="replace"))

    def _read_chars(self) -> list[str]:
        if self._chars is None:
            text = self._check_file().read_text(encoding="utf-8", errors="replace")
            self._chars = sorted(set(text))
        return self._chars


class _Sequences(Dataset):
    def __init__(self, sequences: torch.Tensor):
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int):
        sequence = self.sequences[i]
        return sequence[:-1], sequence[1:]


class _Windows(Dataset):
    """Consecutive non-overlapping windows of ``block_size + 1`` tokens (shifted by
    ``block_size``, so every token is a target once)."""

    def __init__(self, data: torch.Tensor, block_size: int):
        self.data, self.block_size = data, block_size

    def __len__(self) -> int:
        return (len(self.data) - 1) // self.block_size

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range: {len(self)} windows")
        window = self.data[i * self.block_size : (i + 1) * self.block_size + 1]
        return window[:-1], window[1:]
