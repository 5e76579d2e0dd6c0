"""The backbone registry. Importing this package registers every built-in backbone family."""

from pipelines.backbones import basic_cnn, efficientnet, mobilenet, resnet, text_cnn  # noqa: F401  (register)
from pipelines.backbones.base import (BACKBONE_LAYER_NAME, BACKBONES, count_params, create_backbone,
                                      deepest_level, make_backbone, pyramid_outputs,
                                      register_backbone)

__all__ = ["BACKBONES", "BACKBONE_LAYER_NAME", "count_params", "create_backbone", "deepest_level",
           "make_backbone", "pyramid_outputs", "register_backbone"]
