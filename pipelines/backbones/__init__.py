"""The backbone registry. Importing this package imports every module in it, and each module
registers its backbones where they are defined (``@register_backbone``): a new family is one new
file here, with no list to edit."""

import importlib
import pkgutil

from pipelines.backbones.base import (BACKBONE_LAYER_NAME, BACKBONES, count_params, create_backbone,
                                      deepest_level, make_backbone, pyramid_outputs,
                                      register_backbone)


def _import_families():
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module != "base" and not module.startswith("_"):
            importlib.import_module(f"{__name__}.{module}")


_import_families()

__all__ = ["BACKBONES", "BACKBONE_LAYER_NAME", "count_params", "create_backbone", "deepest_level",
           "make_backbone", "pyramid_outputs", "register_backbone"]
