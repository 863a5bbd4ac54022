"""The portable state dict under its first import path; it lives in ``sparsify.state``."""

from sparsify.state import portable_state_dict, restore_state_dict

__all__ = ["portable_state_dict", "restore_state_dict"]
