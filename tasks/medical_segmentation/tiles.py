"""Native-resolution tiles (2D) and patches (3D): training crops, and sliding-window prediction
with blending, one code path for any number of spatial axes.

Resizing a 256-pixel microscopy image to a 64-pixel network input shrinks nuclei to a few
pixels, and a 3D network cannot take a whole CT at once. With tiling the network trains on
``tile``-sized crops at the data's own scale and predicts tile by tile; overlapping tiles are
blended with a window that fades towards tile borders, where a convolutional network sees the
least context, so seams vanish (2D: a Hann window; 3D: nnU-Net's Gaussian importance map,
sigma = 1/8 of the patch). Inputs smaller than a tile are padded (reflected) and cropped back.

A ``tile`` is an int (a square over the first two axes) or one size per spatial axis.
"""

import numpy as np


def _sizes(tile):
    return (int(tile),) * 2 if np.isscalar(tile) else tuple(int(t) for t in tile)


def origins(length, tile, stride):
    """Start offsets covering ``length`` with tiles of ``tile`` every ``stride``; the last tile
    sits flush with the end, so every pixel is covered and no tile runs past the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def pad_to(array, tile):
    """Reflect-pad the spatial axes up to ``tile`` (arrays larger than a tile are unchanged;
    edge-padded where an axis is too short to reflect)."""
    sizes = _sizes(tile)
    pads = [max(0, t - s) for t, s in zip(sizes, array.shape)]
    if not any(pads):
        return array
    widths = [(0, p) for p in pads] + [(0, 0)] * (array.ndim - len(sizes))
    reflect = all(p < s for p, s in zip(pads, array.shape))
    return np.pad(array, widths, mode="reflect" if reflect else "edge")


def grid(image, tile, stride):
    """(tiles (n, *tile, ...), [corner, ...]) over ``image`` (*spatial, ...)."""
    sizes = _sizes(tile)
    strides = (int(stride),) * len(sizes) if np.isscalar(stride) else tuple(stride)
    image = pad_to(image, sizes)
    axes = [origins(image.shape[i], sizes[i], strides[i]) for i in range(len(sizes))]
    corners = [tuple(int(c) for c in corner) for corner in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(sizes), -1).T]
    return np.stack([image[_box(corner, sizes)] for corner in corners]), corners


def _box(corner, sizes):
    return tuple(slice(c, c + s) for c, s in zip(corner, sizes))


def window(tile, kind=None):
    """Blending weights over a tile, lifted off zero so border-only pixels count: an outer
    product of Hann windows (the 2D default) or of Gaussians with sigma 1/8 of the size (the
    3D default, nnU-Net's)."""
    sizes = _sizes(tile)
    kind = kind or ("hann" if len(sizes) == 2 else "gaussian")
    if kind == "hann":
        ramps = [np.hanning(s + 2)[1:-1] for s in sizes]
    elif kind == "gaussian":
        ramps = [np.exp(-0.5 * ((np.arange(s) - (s - 1) / 2) / (s / 8)) ** 2) for s in sizes]
    else:
        raise ValueError(f"window kind {kind!r}: hann or gaussian")
    weights = ramps[0]
    for ramp in ramps[1:]:
        weights = np.multiply.outer(weights, ramp)
    return (weights / weights.max()).astype(np.float32) + 1e-3


def strides_for(tile, overlap):
    return tuple(max(1, int(round(s * (1 - overlap)))) for s in _sizes(tile))


def predict_tiled(predict, image, tile, overlap=0.5):
    """Class probabilities (*spatial, K) for ``image`` (*spatial, C) from ``predict`` applied to
    tiles (n, *tile, C) -> (n, *tile, K), blended where tiles overlap."""
    sizes = _sizes(tile)
    spatial = image.shape[:len(sizes)]
    tiles, corners = grid(image, sizes, strides_for(sizes, overlap))
    proba = predict(tiles)
    padded = tuple(max(s, t) for s, t in zip(spatial, sizes))
    total = np.zeros(padded + proba.shape[-1:], np.float32)
    weight = np.zeros(padded + (1,), np.float32)
    blend = window(sizes)[..., None]
    for corner, p in zip(corners, proba):
        box = _box(corner, sizes)
        total[box] += p * blend
        weight[box] += blend
    return (total / weight)[tuple(slice(0, s) for s in spatial)]
