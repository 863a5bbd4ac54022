"""Weights & Biases tracking that never prompts and never hangs.

``WandbLogger(mode="auto")`` runs online when the user is logged in (``WANDB_API_KEY`` or a
``.netrc`` entry, the places ``wandb login`` writes) and the W&B host answers within a few
seconds; otherwise it runs offline and, at the end, says where the run is and how to sync it.
``WANDB_MODE`` in the environment, or ``mode="online" | "offline" | "disabled"``, overrides.
"""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from sparsify.errors import check_choice

Mode = Literal["auto", "online", "offline", "disabled"]


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = os.environ.get("NETRC") or Path.home() / ".netrc"
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def host_reachable(timeout: float = 3.0) -> bool:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: Mode = "auto") -> str:
    """``online`` or ``offline`` (or ``disabled``) for ``mode``, the environment and the network."""
    check_choice("mode", mode, Mode)
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if env_mode == "dryrun":
        return "offline"
    return "online" if has_credentials() and host_reachable() else "offline"


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``mode="auto"``: online when possible, else offline.

    Every other argument is Lightning's (``project``, ``name``, ``save_dir``, ``log_model``,
    ...); ``save_dir=None`` lets the ``sparsify`` command put the run under
    ``--trainer.default_root_dir``.
    """

    def __init__(self, project: str = "sparsify", mode: Mode = "auto", save_dir=".", **kwargs):
        self.mode = resolve_mode(mode)
        super().__init__(project=project, save_dir=save_dir, **kwargs)
        self._wandb_init["mode"] = self.mode
        self._offline = self.mode != "online"

    def offline_hint(self) -> str | None:
        """Where an offline run lies and the command that uploads it, or ``None`` if online."""
        if self.mode != "offline" or self._experiment is None:
            return None
        run_dir = Path(self.experiment.dir).parent
        return f"W&B run saved offline in {run_dir}\nupload it with: wandb sync {run_dir}"
