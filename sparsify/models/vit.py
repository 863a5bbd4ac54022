"""Vision Transformers (Dosovitskiy et al. 2021) in the DeiT sizes (Touvron et al. 2021):
Tiny = width 192, 3 heads; Small = width 384, 6 heads; both 12 blocks, MLP ratio 4.

The image is cut into ``patch_size`` × ``patch_size`` patches by a strided convolution, a class
token and a learned position embedding are added, and the head reads the class token after a
final LayerNorm. ``deit_tiny`` / ``deit_small`` are the same architectures as ``vit_tiny`` /
``vit_small`` under the DeiT names (DeiT changes the training recipe, not the network; the
distillation token is not included). Patch size 16 for 224 × 224 images, 4 for 32 × 32.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.models import register_model
from sparsify.models.transformer import Block, init_transformer


class VisionTransformer(nn.Module):
    def __init__(
        self,
        num_classes: int,
        image_size: int,
        patch_size: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(
                f"patch_size={patch_size} is invalid: must divide image_size={image_size}"
            )
        self.image_size = image_size
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, width))
        self.blocks = nn.Sequential(
            *(Block(width, heads, mlp_ratio, dropout=dropout) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay (the timm convention, read by sparsify's
        LightningModules): the class token and the position embedding."""
        return {"cls_token", "pos_embed"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ConfigError(
                f"image_size={self.image_size} is invalid for inputs of size "
                f"{tuple(x.shape[-2:])}: set model_kwargs.image_size to the input size"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6)}


def _make(size: str):
    width, depth, heads = SIZES[size]

    def build(
        num_classes: int = 1000,
        image_size: int = 224,
        patch_size: int | None = None,
        in_channels: int = 3,
        dropout: float = 0.0,
        init: str = "trunc_normal",
    ) -> nn.Module:
        if patch_size is None:
            patch_size = 4 if image_size <= 64 else 16
        model = VisionTransformer(
            num_classes, image_size, patch_size, width, depth, heads, 4.0, in_channels, dropout
        )
        init_transformer(model, init)
        nn.init.trunc_normal_(model.pos_embed, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(model.cls_token, std=0.02, a=-0.04, b=0.04)
        return model

    build.__doc__ = (
        f"ViT/DeiT-{size.capitalize()}: width {width}, {depth} blocks, {heads} heads. "
        "``patch_size`` defaults to 4 for images up to 64 px, else 16."
    )
    return build


for _size in SIZES:
    _build = _make(_size)
    register_model(f"vit_{_size}")(_build)
    register_model(f"deit_{_size}")(_build)
