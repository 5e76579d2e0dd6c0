"""Native-resolution tiles: training crops, and overlapping-tile prediction with blending.

Resizing a 256-pixel microscopy image to a 64-pixel network input shrinks nuclei to a few
pixels. With tiling the network trains on ``tile``-sized crops at the image's own scale and
predicts large images tile by tile; overlapping tiles are blended with a window that fades
towards tile borders, where a convolutional network sees the least context, so seams vanish.
Images smaller than a tile are padded (reflected) and cropped back.
"""

import numpy as np


def origins(length, tile, stride):
    """Start offsets covering ``length`` with tiles of ``tile`` every ``stride``; the last tile
    sits flush with the end, so every pixel is covered and no tile runs past the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def pad_to(array, tile):
    """Reflect-pad the first two axes up to ``tile`` (arrays larger than a tile are unchanged)."""
    pad_h, pad_w = max(0, tile - array.shape[0]), max(0, tile - array.shape[1])
    if not pad_h and not pad_w:
        return array
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    mode = "reflect" if pad_h < array.shape[0] and pad_w < array.shape[1] else "edge"
    return np.pad(array, widths, mode=mode)


def grid(image, tile, stride):
    """(tiles (n, tile, tile, ...), [(top, left), ...]) over ``image`` (H, W, ...)."""
    image = pad_to(image, tile)
    corners = [(top, left) for top in origins(image.shape[0], tile, stride)
               for left in origins(image.shape[1], tile, stride)]
    return np.stack([image[t:t + tile, l:l + tile] for t, l in corners]), corners


def window(tile):
    """Blending weights: a separable Hann window lifted off zero so border-only pixels count."""
    ramp = np.hanning(tile + 2)[1:-1]
    return np.outer(ramp, ramp).astype(np.float32) + 1e-3


def predict_tiled(predict, image, tile, overlap=0.5):
    """Class probabilities (H, W, K) for ``image`` (H, W, C) from ``predict`` applied to tiles
    (n, tile, tile, C) -> (n, tile, tile, K), blended where tiles overlap."""
    height, width = image.shape[:2]
    stride = max(1, int(round(tile * (1 - overlap))))
    tiles, corners = grid(image, tile, stride)
    proba = predict(tiles)
    padded = (max(height, tile), max(width, tile))
    total = np.zeros(padded + proba.shape[-1:], np.float32)
    weight = np.zeros(padded + (1,), np.float32)
    blend = window(tile)[..., None]
    for (top, left), p in zip(corners, proba):
        total[top:top + tile, left:left + tile] += p * blend
        weight[top:top + tile, left:left + tile] += blend
    return (total / weight)[:height, :width]
