"""`ModelFlags`: the model options a command line (export, training) offers, one set for all
families. Each family turns them into its own config (`<Config>.from_flags`), and
`models.factory.config_from_flags` is the one entry point, so a CLI never builds a family's
config by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.backbones import pycls_backbone_name


@dataclass(frozen=True)
class ModelFlags:
    # A registered backbone (models.backbones); None: the pycls ResNet of `depth`.
    backbone: str | None = None
    depth: int = 50
    with_ma: bool = False
    pooling: str = "gem"
    gem_p: float = 3.0
    feature: str = "last"
    # None: the family's default (512 for DOLG and CFCD; no FC for the pooled family).
    reduction_dim: int | None = None
    zero_init_final_gamma: bool = False

    @property
    def backbone_name(self) -> str:
        return self.backbone or pycls_backbone_name(self.depth)

    def refuse_local_branch(self, family: str) -> None:
        """Families without DOLG's local branch have no multi-atrous module to add."""
        if self.with_ma:
            raise ValueError(f"--with-ma applies to DOLG only ({family} has no local branch)")
