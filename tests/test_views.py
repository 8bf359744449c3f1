"""Test-time views (`csae_tf.views`): which views a set holds, and that codes are averaged over them."""

import numpy as np
import pytest

from csae_tf import views


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(1, 256, (3, 6, 5, 1)).astype(np.uint8)


@pytest.mark.parametrize("view_set, n", [("none", 1), ("flip", 2), ("shifts", 5), ("flip-shifts", 10)])
def test_each_view_set_has_its_number_of_views_the_image_first(images, view_set, n):
    got = views.views(images, view_set)
    assert len(got) == views.count(view_set) == n
    assert np.array_equal(got[0], images)
    assert all(v.shape == images.shape and v.dtype == np.uint8 for v in got)


def test_flip_views_are_the_horizontal_mirror(images):
    assert np.array_equal(views.views(images, "flip")[1], images[:, :, ::-1])
    assert any(np.array_equal(v, images[:, :, ::-1]) for v in views.views(images, "flip-shifts")[1:])


def test_a_shift_moves_the_image_one_pixel_and_fills_in_background(images):
    down, right = views.shift(images, 1, 0), views.shift(images, 0, 1)
    assert np.array_equal(down[:, 1:], images[:, :-1]) and not down[:, 0].any()
    assert np.array_equal(right[:, :, 1:], images[:, :, :-1]) and not right[:, :, 0].any()
    shifted = views.views(images, "shifts")[1:]
    assert all(not np.array_equal(v, images) for v in shifted) and len({v.tobytes() for v in shifted}) == 4


def test_mean_codes_average_the_codes_of_every_view(images):
    class Flatten:  # stands in for a model: the code of an image is its pixels
        def encode(self, x):
            return np.asarray(x, np.float32).reshape(len(x), -1)

    got = views.mean_codes(Flatten(), images, "flip-shifts", batch=2)
    want = np.mean([v.reshape(3, -1).astype(np.float32) for v in views.views(images, "flip-shifts")], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_an_unknown_view_set_is_refused(images):
    with pytest.raises(ValueError, match="unknown view set"):
        views.views(images, "rotate")
