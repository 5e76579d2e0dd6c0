"""Keras layers chosen by spatial dimensions (MONAI's ``spatial_dims``), so one builder writes a
network for images (2) and volumes (3) with the same layer names: a 2D run's weights then find
their 3D twins by name (see :func:`pipelines.transfer.copy_weights`, which inflates kernels)."""

from keras import layers

_LAYERS = {
    "conv": {2: layers.Conv2D, 3: layers.Conv3D},
    "max_pool": {2: layers.MaxPooling2D, 3: layers.MaxPooling3D},
    "average_pool": {2: layers.AveragePooling2D, 3: layers.AveragePooling3D},
    "global_average_pool": {1: layers.GlobalAveragePooling1D, 2: layers.GlobalAveragePooling2D,
                            3: layers.GlobalAveragePooling3D},
    "global_max_pool": {1: layers.GlobalMaxPooling1D, 2: layers.GlobalMaxPooling2D,
                        3: layers.GlobalMaxPooling3D},
    "spatial_dropout": {2: layers.SpatialDropout2D, 3: layers.SpatialDropout3D},
}


def layer(kind, spatial_dims):
    """The Keras layer class of ``kind`` for ``spatial_dims`` (e.g. ``layer("conv", 3)`` is Conv3D)."""
    try:
        return _LAYERS[kind][spatial_dims]
    except KeyError:
        raise ValueError(f"no {kind} layer for {spatial_dims} spatial dimensions") from None


def spatial_dims_of(input_shape):
    """Spatial dimensions of an input shape without the batch axis: (H, W, C) -> 2, (D, H, W, C) -> 3."""
    return len(input_shape) - 1
