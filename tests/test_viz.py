"""Figure helpers: grid geometry, heat-map image, class-mean distances."""

import numpy as np
import pytest

from csae_tf import viz


def test_image_grid_has_the_documented_shape_and_places_images():
    images = np.stack([np.full((4, 5, 1), v, np.uint8) for v in (10, 20, 30)])
    grid = viz.image_grid(images, 2, 2, pad=1)
    assert grid.shape == viz.grid_shape(2, 2, (4, 5, 1), pad=1) == (11, 13, 1)
    assert grid[1, 1, 0] == 10 and grid[1, 7, 0] == 20 and grid[6, 1, 0] == 30 and grid[6, 7, 0] == 255


def test_image_grid_rejects_too_many_images():
    with pytest.raises(ValueError, match="do not fit"):
        viz.image_grid(np.zeros((5, 2, 2, 1), np.uint8), 2, 2)


def test_model_scale_images_map_to_0_255():
    np.testing.assert_array_equal(viz.to_uint8(np.array([-1.0, 0.0, 1.0])), [0, 128, 255])


def test_class_mean_distances_of_two_clusters():
    latent = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    d = viz.class_mean_distances(latent, np.array([0, 0, 1]), 3)
    assert d[0, 1] == pytest.approx(5.0) and d[0, 0] == 0 and np.isnan(d[2, 0])


def test_heatmap_is_an_rgb_image_and_png_round_trips(tmp_path):
    from PIL import Image

    image = viz.heatmap(np.arange(9.0).reshape(3, 3), "test")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    path = viz.save_png(image, tmp_path / "h.png")
    assert Image.open(path).size == (image.shape[1], image.shape[0])
