"""Tiles for native-resolution segmentation: full coverage, exact reassembly, smooth blending."""

import numpy as np
import pytest

from tasks.medical_segmentation import tiles


@pytest.mark.parametrize("length,tile,stride", [(10, 4, 2), (9, 4, 4), (4, 4, 2), (3, 4, 2), (100, 32, 16)])
def test_origins_cover_every_pixel_and_stay_inside(length, tile, stride):
    starts = tiles.origins(length, tile, stride)
    covered = np.zeros(max(length, tile), bool)
    for start in starts:
        assert 0 <= start and start + tile <= max(length, tile)
        covered[start:start + tile] = True
    assert covered.all()
    assert starts == sorted(set(starts))


def test_grid_pads_small_images_and_keeps_pixels_in_place():
    image = np.arange(3 * 5, dtype=np.float32).reshape(3, 5, 1)
    patches, corners = tiles.grid(image, 4, 2)
    assert patches.shape == (2, 4, 4, 1) and corners == [(0, 0), (0, 1)]
    np.testing.assert_array_equal(patches[1][:3, :4, 0], image[:3, 1:5, 0])


@pytest.mark.parametrize("shape", [(37, 50), (16, 16), (9, 30)])
def test_pointwise_network_is_reassembled_exactly(shape):
    """A network that looks at each pixel alone must give the same map tiled as whole."""
    rng = np.random.default_rng(0)
    image = rng.random(shape + (1,)).astype(np.float32)

    def predict(batch):
        return np.concatenate([1 - batch, batch], axis=-1)

    proba = tiles.predict_tiled(predict, image, tile=16)
    assert proba.shape == shape + (2,)
    np.testing.assert_allclose(proba[..., 1], image[..., 0], atol=1e-6)


def test_overlaps_are_blended_not_overwritten():
    """Tiles that disagree meet in a smooth ramp: no seam where one tile's output ends."""
    calls = []

    def predict(batch):
        calls.append(len(batch))
        values = np.arange(len(batch), dtype=np.float32)[:, None, None, None]
        return np.broadcast_to(values, batch.shape[:3] + (1,)).copy()

    proba = tiles.predict_tiled(predict, np.zeros((16, 40, 1), np.float32), tile=16, overlap=0.5)[..., 0]
    row = proba[8]
    assert calls == [4]  # tiles at 0, 8, 16, 24
    assert row[0] == pytest.approx(0, abs=1e-2) and row[-1] == pytest.approx(3, abs=1e-2)
    assert np.all(np.diff(row) >= -1e-6) and np.max(np.diff(row)) < 0.5
