"""``builtin:shapes``: a deterministic synthetic captioning set that needs no download.

Each image shows one or two coloured shapes (six colours; circle, square, triangle, diamond) on
a noisy light background: about 1,200 colour-shape-layout combinations, more than the training
images, so a caption must be composed, not looked up. Its 3-5 reference captions say the colour, the shape, the count and, for two
different shapes, where one is relative to the other, in varied wording. The first reference is
always the plainest phrasing, the others are drawn from the remaining templates, so a model must
read colour, kind, count and layout from the pixels to score well.
"""

import numpy as np

COLOURS = {"red": (0.85, 0.12, 0.12), "green": (0.12, 0.62, 0.18), "blue": (0.12, 0.28, 0.85),
           "yellow": (0.92, 0.85, 0.1), "purple": (0.55, 0.18, 0.7), "orange": (0.97, 0.55, 0.08)}
SHAPES = ("circle", "square", "triangle", "diamond")


def _draw(image, kind, colour, cy, cx, radius, rng):
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if kind == "circle":
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    elif kind == "square":
        inside = (np.abs(yy - cy) <= radius * 0.85) & (np.abs(xx - cx) <= radius * 0.85)
    elif kind == "diamond":
        inside = np.abs(yy - cy) + np.abs(xx - cx) <= radius * 1.1
    else:  # an upward triangle: apex at the top, base at the bottom
        top, bottom = cy - radius, cy + radius
        half_width = (yy - top) / (2 * radius) * radius
        inside = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)
    tint = np.clip(np.asarray(COLOURS[colour]) + rng.normal(0, 0.04, 3), 0, 1)
    image[inside] = tint


def _captions(shapes, layout, rng):
    """3-5 references; ``shapes`` is [(colour, kind), ...] ordered left-to-right or top-to-bottom."""
    if len(shapes) == 1:
        (c, s), = shapes
        templates = [f"a {c} {s}", f"there is a {c} {s}", f"a single {c} {s}",
                     f"one {c} {s} on a plain background", f"a picture of a {c} {s}"]
    elif shapes[0] == shapes[1]:
        (c, s), _ = shapes
        where = "side by side" if layout == "horizontal" else "one above the other"
        templates = [f"two {c} {s}s", f"there are two {c} {s}s", f"a pair of {c} {s}s",
                     f"two {c} {s}s {where}", f"two identical {c} {s}s"]
    else:
        (c1, s1), (c2, s2) = shapes
        first, second = ("left of", "right of") if layout == "horizontal" else ("above", "below")
        templates = [f"a {c1} {s1} {first} a {c2} {s2}", f"a {c2} {s2} {second} a {c1} {s1}",
                     f"there is a {c1} {s1} {first} a {c2} {s2}", f"a {c1} {s1} and a {c2} {s2}",
                     f"two shapes , a {c1} {s1} {first} a {c2} {s2}"]
    extra = rng.permutation(len(templates) - 1)[:rng.integers(2, 5)] + 1
    return [templates[0]] + [templates[i] for i in sorted(extra)]


def generate(n=2000, size=32, seed=0):
    """(images (n, size, size, 3) float32 in [0, 1], [[caption, ...], ...])."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.float32)
    references = []
    for i in range(n):
        image = np.clip(0.82 + rng.normal(0, 0.03, (size, size, 3)), 0, 1)
        count = 1 if rng.random() < 0.35 else 2
        if count == 2 and rng.random() < 0.3:  # the same shape twice
            shape = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
            shapes = [shape, shape]
        else:
            shapes = [(str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))) for _ in range(count)]
            while count == 2 and shapes[0] == shapes[1]:
                shapes[1] = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
        layout = "horizontal" if rng.random() < 0.5 else "vertical"
        radius = size * rng.uniform(0.14, 0.2)
        if count == 1:
            centres = [rng.uniform(radius + 1, size - radius - 1, 2)]
        else:  # the first shape before the second along the layout axis, never overlapping
            first = rng.uniform(radius + 1, size - 3 * radius - 2)
            along = [first, rng.uniform(first + 2 * radius + 1, size - radius - 1)]
            middle = rng.uniform(radius + 1, size - radius - 1)  # roughly in line, not diagonal
            across = np.clip(middle + rng.normal(0, size * 0.06, 2), radius + 1, size - radius - 1)
            centres = [(across[k], along[k]) if layout == "horizontal" else (along[k], across[k])
                       for k in range(2)]
        for (colour, kind), (cy, cx) in zip(shapes, centres):
            _draw(image, kind, colour, cy, cx, radius, rng)
        images[i] = image
        references.append(_captions(shapes, layout, rng))
    return images, references
