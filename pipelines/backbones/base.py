"""The pyramid contract every image backbone honours (after KerasHub's ``pyramid_outputs``).

A backbone is a plain functional ``keras.Model`` named ``"backbone"`` whose output is a dict of
feature maps by level: ``{"P1": ..., "P2": ..., ...}``. Level ``Pk`` has stride ``2**k`` along
every spatial axis: for an input of H x W its spatial size is ``ceil(H / 2**k) x ceil(W / 2**k)``,
and for a volume of D x H x W also ``ceil(D / 2**k)`` in depth. A volume backbone may pool an
axis less where the volume is thin (anisotropic strides, as nnU-Net plans them): it declares
each level's strides, at most ``2**k`` per axis, and backbone.json records them. The registry entry says whether a
backbone takes images (``spatial_dims=2``, input H x W x C) or volumes (3, input D x H x W x C). Backbones expose as many
levels as their depth gives (``basic_cnn`` with three stages: P1..P3; ``resnet18``: P1..P5).

Heads tap the dict: classifiers pool the deepest level, the captioning encoder attends over P4 or
P5, the U-Net decoder takes every level as a skip connection. Because the backbone is one nested
model inside every task model, ``model.get_layer("backbone")`` finds it again after loading, its
weights can be saved alone (``backbone.weights.h5``) and reused by any task of the same modality.

The contract is checked once, when the backbone is built (:func:`make_backbone`).
"""

import math

import keras

from pipelines.errors import UserError
from pipelines.registry import Registry

BACKBONES = Registry("backbone")
BACKBONE_LAYER_NAME = "backbone"


def register_backbone(name, *, modality, min_size=1, note="", spatial_dims=None, **meta):
    """Decorator registering a builder ``fn(input_shape, **options) -> keras.Model``.

    ``modality`` is ``"image"`` (pyramid contract above) or ``"text"`` (see
    :mod:`pipelines.backbones.text_cnn`); ``spatial_dims`` is 2 (images, the default for the
    image modality) or 3 (volumes); ``min_size`` applies to every spatial axis, unless the
    entry gives ``min_shape(spatial_dims, **options)``: the least size per axis for those options
    (a backbone that keeps a thin volume's depth needs less of it). An entry's
    ``check_options(**options)`` may raise ValueError for options it cannot build, so that they
    are refused before a run exists. ``size_multiple`` refuses other sizes (a network whose
    strided layers would break the pyramid's ceil rule on them). ``normalises_input``: the
    backbone's first layer maps [0, 1] pixels to what its (pretrained) weights expect, so a task
    leaves out a pixel standardisation of its own. Extra ``meta`` (a text backbone's ``spans``, the 2D backbone
    a 3D one ``inflates``) is kept on the entry.
    """
    if modality == "image":
        spatial_dims = spatial_dims or 2
    return BACKBONES.register(name, modality=modality, min_size=min_size, note=note,
                              spatial_dims=spatial_dims, **meta)


def twin(name, spatial_dims):
    """The registered backbone with ``spatial_dims`` that shares ``name``'s builder (a 3D entry
    names the 2D one it ``inflates``): ``name`` itself if it already has those dimensions, else
    its twin, or None."""
    entry = BACKBONES.entry(name)
    if entry.meta.get("spatial_dims") == spatial_dims:
        return name
    if spatial_dims == 2:
        return entry.meta.get("inflates")
    return next((other for other in BACKBONES.names()
                 if BACKBONES.entry(other).meta.get("inflates") == name
                 and BACKBONES.entry(other).meta.get("spatial_dims") == spatial_dims), None)


def make_backbone(inputs, pyramid, *, name=BACKBONE_LAYER_NAME, strides=None):
    """Wrap an input and its dict of level tensors as a backbone, checking the stride contract
    (``strides``: per level, one stride per axis where a backbone pools anisotropically)."""
    model = keras.Model(inputs, dict(sorted(pyramid.items())), name=name)
    validate_pyramid(model, strides)
    model.pyramid_outputs = model.output
    return model


def level_strides(backbone):
    """{level: [stride per spatial axis]} read off the built backbone (2**k on every axis unless
    it pools anisotropically); recorded in backbone.json."""
    spatial = tuple(backbone.input_shape[1:-1])
    if not all(spatial):
        return None

    def stride(size, out):  # the power of two that gives ``out`` = ceil(size / stride)
        value = 1
        while math.ceil(size / value) > out:
            value *= 2
        return value

    return {level: [stride(size, out) for size, out in zip(spatial, tensor.shape[1:-1])]
            for level, tensor in sorted(pyramid_outputs(backbone).items())
            if len(tensor.shape) == len(spatial) + 2}


def pyramid_outputs(backbone):
    """The backbone's level dict (also works on a backbone reloaded from a .keras file)."""
    outputs = backbone.output
    if not isinstance(outputs, dict):
        raise UserError(f"backbone {backbone.name!r} does not output a pyramid dict")
    return outputs


def deepest_level(backbone):
    return max(pyramid_outputs(backbone), key=lambda level: int(level[1:]))


def validate_pyramid(backbone, strides=None):
    """Raise ValueError unless every level Pk has spatial size ceil(size / stride) on every axis,
    the stride being 2**k (images and volumes alike) or, for a backbone that pools
    anisotropically, the one it declares in ``strides[level]`` (one per axis, each at most 2**k);
    a text backbone's sequence levels are not checked."""
    spatial = tuple(backbone.input_shape[1:-1])
    for level, tensor in pyramid_outputs(backbone).items():
        if not (level.startswith("P") and level[1:].isdigit()):
            raise ValueError(f"pyramid level names must be P1..P5, got {level!r}")
        if len(tensor.shape) != len(spatial) + 2 or len(spatial) < 2:
            continue
        stride = tuple((strides or {}).get(level) or (2 ** int(level[1:]),) * len(spatial))
        if len(stride) != len(spatial) or max(stride) > 2 ** int(level[1:]):
            raise ValueError(f"{backbone.name}: level {level} declares strides {stride}; give one per "
                             f"axis, each at most {2 ** int(level[1:])}")
        expected = tuple(math.ceil(size / s) if size else None for size, s in zip(spatial, stride))
        if all(spatial) and tuple(tensor.shape[1:-1]) != expected:
            raise ValueError(f"{backbone.name}: level {level} has spatial shape "
                             f"{tuple(tensor.shape[1:-1])}, expected {expected} (stride {stride})")


def create_backbone(name, input_shape, **options):
    """Build a registered backbone for ``input_shape``; bad names or options raise UserError."""
    entry = check_input(name, input_shape, options)
    try:
        return entry.obj(tuple(input_shape), **options)
    except TypeError as error:
        if "argument" in str(error):
            raise _bad_options(name, error) from None
        raise
    except ValueError as error:  # a value the entry's check_options lets through but a layer refuses
        raise _bad_options(name, error) from None


def _bad_options(name, error):
    return UserError(f"backbone {name!r}: bad backbone_options ({error})")


def min_shape(name, spatial_dims, options=None):
    """The least input size along each spatial axis that backbone ``name`` takes with ``options``."""
    entry = BACKBONES.entry(name)
    if "min_shape" in entry.meta:
        try:
            return tuple(int(s) for s in entry.meta["min_shape"](spatial_dims, **(options or {})))
        except TypeError as error:
            raise UserError(f"backbone {name!r}: bad backbone_options ({error})") from None
    return (int(entry.meta.get("min_size", 1)),) * spatial_dims


def check_input(name, input_shape, options=None):
    """The registry entry of ``name``, if it takes ``input_shape`` (images for 2D backbones,
    volumes for 3D ones, at least :func:`min_shape` along each axis); else a UserError, raised
    before any run directory is made."""
    entry = BACKBONES.entry(name)
    if entry.meta.get("check_options"):
        try:
            entry.meta["check_options"](**(options or {}))
        except ValueError as error:
            raise _bad_options(name, error) from None
    if entry.meta["modality"] == "image":
        dims = entry.meta["spatial_dims"]
        if dims == 3 and len(input_shape) != 4:
            raise UserError(f"backbone {name!r} takes volumes (depth, height, width, channels); this "
                            f"input is {tuple(input_shape)}: use a 2D backbone for images")
        if dims == 2 and (len(input_shape) != 3 or input_shape[-1] not in (1, 3)):
            hint = "; use a 3D backbone for volumes" if len(input_shape) == 4 else ""
            raise UserError(f"backbone {name!r} needs (height, width, 1 or 3) input, got "
                            f"{tuple(input_shape)}{hint}")
        least = min_shape(name, len(input_shape) - 1, options)
        if any(size < m for size, m in zip(input_shape[:-1], least)):
            needed = (f"at least {least[0]} along every axis" if len(set(least)) == 1
                      else f"at least {'x'.join(map(str, least))}")
            raise UserError(f"backbone {name!r} needs inputs of {needed}, got "
                            f"{'x'.join(str(s) for s in input_shape[:-1])}; set image_size"
                            + (" or volume_size" if len(least) == 3 else ""))
        multiple = entry.meta.get("size_multiple")
        if multiple and any(size % multiple for size in input_shape[:-1]):
            raise UserError(f"backbone {name!r} needs sizes that are a multiple of {multiple} (its "
                            f"stride-2 layers pad one side only), got "
                            f"{'x'.join(str(s) for s in input_shape[:-1])}; set image_size")
    return entry


def count_params(name, input_shape):
    """Weights of backbone ``name`` built for ``input_shape``. No clear_session: it would reset
    the caller's Keras settings (dtype policy) and run a full garbage collection per backbone,
    seconds each in a process that has built many models."""
    return create_backbone(name, input_shape).count_params()
