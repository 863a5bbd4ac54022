"""sparsify: train sparse neural networks through implicit bias, with PyTorch Lightning.

The package itself is the core and needs torch only; the Lightning side is ``sparsify.lightning``,
``sparsify.callbacks`` and ``sparsify.datamodules``, the application (CLI, compare, launchers,
reports, the export command) ``sparsify.app`` (docs/core.md).
"""

from sparsify.errors import ConfigError
from sparsify.masks import layer_densities, magnitude_prune, sparsity_report
from sparsify.pai import prune_at_init
from sparsify.renamed import install as _install_renamed_modules
from sparsify.reparam import (
    Mask,
    PointwiseProduct,
    collapse,
    layer_masks,
    pointwise_factors,
    reparametrize,
    rescale_,
    weight_parametrization,
)

_install_renamed_modules()

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Mask",
    "PointwiseProduct",
    "collapse",
    "layer_densities",
    "magnitude_prune",
    "layer_masks",
    "pointwise_factors",
    "prune_at_init",
    "reparametrize",
    "rescale_",
    "sparsity_report",
    "weight_parametrization",
]
