"""A profiler that profiles nothing, at no cost."""

from __future__ import annotations

from contextlib import nullcontext

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default ``PassThroughProfiler`` (it records nothing) without its cost.

    Lightning wraps every hook, callback and strategy call in ``with profiler.profile(name):``,
    about sixty times a training step, and the base class builds a new generator-based context
    manager each time: 0.08 ms of a 1.7 ms LeNet-300-100 step on one CPU thread. This one hands
    back the same do-nothing context manager every time. ``sparsify fit`` uses it unless
    ``--trainer.profiler`` names another (``simple``, ``advanced``, ``pytorch``).
    """

    def profile(self, action_name: str) -> nullcontext:
        return _NOTHING
