"""Classic global-pooling baseline: pycls ResNet -> GeM / MAC / SPoC on f4 -> FC 2048 -> D.

Same backbone names as DOLG (`globalmodel.*`), so a DOLG or pycls backbone loads into it; the
FC is a plain learned linear layer (no PCA whitening). Exports through the same ONNX path.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.dolg import DOLGConfig
from models.layers.modules import build_pool
from models.resnet import S4_DIM, ResNet


class ResNetPool(nn.Module):
    """forward(x [B,3,H,W]) -> [B,reduction_dim], un-normalised (like DOLG.forward)."""

    def __init__(self, config: DOLGConfig | None = None) -> None:
        super().__init__()
        config = config or DOLGConfig(architecture="resnet_pool")
        if config.architecture != "resnet_pool":
            raise ValueError(
                f"ResNetPool needs architecture='resnet_pool', got {config.architecture!r}"
            )
        if config.with_ma:
            raise ValueError("with_ma applies to DOLG only")
        self.config = config
        self.globalmodel = ResNet(config.depth, config.zero_init_final_gamma)
        self.pool = build_pool(config.pooling, p=config.gem_p)
        self.fc = nn.Linear(S4_DIM, config.reduction_dim, bias=True)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.globalmodel(x)

    def forward_head(self, f3: Tensor, f4: Tensor) -> Tensor:
        del f3  # only the s4 map is pooled
        return self.fc(self.pool(f4).flatten(1))  # [B,2048] -> [B,D]

    def forward(self, x: Tensor) -> Tensor:
        f3, f4 = self.forward_features(x)
        return self.forward_head(f3, f4)
