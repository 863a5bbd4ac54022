"""The Lightning side of sparsify beside ``sparsify.callbacks`` and ``sparsify.datamodules``: the
LightningModules (``module``) and the iterative-pruning driver over ``Trainer.fit``
(``iterative``)."""

from sparsify.lightning.module import ImageClassifier, LanguageModel, Regressor, TrainingModule

__all__ = ["ImageClassifier", "LanguageModel", "Regressor", "TrainingModule"]
