"""`csae_tf.images`: the one input contract for user images, and the files it reads (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from csae_tf import images, runs

MNIST_INPUT = (32, 32, 1)  # a conv model of 28x28 grey images pads them to 32x32


def check(array, image_shape=MNIST_INPUT, arch="conv"):
    return images.check(array, image_shape, arch, "test images")


def test_uint8_images_without_a_channel_axis_get_one():
    """(N, h, w) is a batch of grey images: the channel axis is added, the pixels are unchanged."""
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    out = check(array)
    assert out.shape == (2, 28, 28, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], array)


def test_whole_number_floats_above_one_are_taken_as_0_255_pixels():
    """Floats whose values are whole numbers with a maximum above 1 say they are 0..255 pixels."""
    array = np.array([[[0.0, 17.0], [128.0, 255.0]]], np.float32)
    np.testing.assert_array_equal(images.as_uint8(array, "x")[..., 0], array.astype(np.uint8))


def test_floats_in_0_1_are_refused_with_a_message_saying_what_to_pass():
    """[0, 1] floats could be scaled images or near-black ones: guessing gave nonsense answers, so refuse."""
    with pytest.raises(images.ImageError, match=r"x: float pixels in \[0, 1\].*uint8 0\.\.255"):
        images.as_uint8(np.full((1, 28, 28), 0.5), "x")


def test_fractional_floats_are_refused():
    with pytest.raises(images.ImageError, match="whole numbers"):
        images.as_uint8(np.full((1, 28, 28), 12.5), "x")


@pytest.mark.parametrize("array", [np.full((1, 28, 28), 300, np.int32), np.full((1, 28, 28), -1.0)],
                         ids=["int-above-255", "model-scale-floats"])
def test_values_outside_0_255_are_refused(array):
    with pytest.raises(images.ImageError, match=r"must lie in 0\.\.255"):
        images.as_uint8(array, "x")


def test_colour_images_for_a_grey_model_are_refused():
    with pytest.raises(images.ImageError, match="colour images for a greyscale model"):
        check(np.zeros((1, 28, 28, 3), np.uint8))


@pytest.mark.parametrize("size", [(28, 28), (32, 32)])
def test_the_datasets_size_and_the_padded_size_are_accepted(size):
    assert check(np.zeros((1, *size), np.uint8)).shape == (1, *size, 1)


@pytest.mark.parametrize("size", [(20, 20), (33, 33)])
def test_sizes_that_do_not_pad_to_the_model_input_are_refused(size):
    with pytest.raises(images.ImageError, match=r"do not fit the model's input \(32, 32, 1\)"):
        check(np.zeros((1, *size), np.uint8))


def test_a_linear_model_takes_only_its_own_size():
    """CSAE-L does not pad: 28x28 in, 28x28 only."""
    assert check(np.zeros((1, 28, 28), np.uint8), (28, 28, 1), "linear").shape == (1, 28, 28, 1)
    with pytest.raises(images.ImageError):
        check(np.zeros((1, 27, 27), np.uint8), (28, 28, 1), "linear")


def test_runs_check_images_is_the_same_contract():
    """evaluate, extrapolate and ood go through runs.check_images: floats in [0, 1] are refused there too."""

    class Model:
        image_shape, arch = MNIST_INPUT, "conv"

    with pytest.raises(runs.RunDirError, match=r"\[0, 1\]"):
        runs.check_images(np.full((2, 28, 28), 0.5, np.float32), Model(), "--images f.npy")


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", b""], ids=["garbage", "empty"])
def test_a_corrupt_npz_is_a_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(images.ImageError) as err:
        images.read_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_corrupt_npy_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.npy"
    path.write_bytes(b"\x93NUMPY not an array")
    with pytest.raises(images.ImageError, match="broken.npy: not a readable .npy file") as err:
        images.read_file(path)
    assert "\n" not in str(err.value)


def test_a_corrupt_png_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(images.ImageError, match="broken.png: cannot read the image"):
        images.read_file(path)


@pytest.mark.parametrize("key", ["x", "images", "digits"])
def test_npz_images_are_x_or_images_or_the_only_array(tmp_path, key):
    path = tmp_path / "set.npz"
    np.savez(path, **{key: np.ones((3, 28, 28), np.uint8)}, y=np.arange(3))
    source = images.read_file(path)
    assert source.images.shape == (3, 28, 28, 1)
    assert source.names == [f"{path}[0]", f"{path}[1]", f"{path}[2]"]
    np.testing.assert_array_equal(source.labels, [0, 1, 2])


def test_an_npz_with_several_unnamed_arrays_is_an_error_listing_them(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, a=np.ones((1, 28, 28), np.uint8), b=np.ones((1, 28, 28), np.uint8))
    with pytest.raises(images.ImageError, match="no array named x or images .it holds a, b"):
        images.read_file(path)


def test_png_files_keep_their_channels(tmp_path):
    """A greyscale PNG is one channel, an RGB one three; the pixels are read unchanged."""
    grey = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(images.read_picture(tmp_path / "grey.png"), grey[None, ..., None])
    assert images.read_picture(tmp_path / "rgb.png").shape == (1, 28, 28, 3)


def test_folders_are_read_recursively_in_sorted_order_and_other_files_skipped(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "a.png", "b/1.PNG"):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.relative_to(tmp_path).as_posix() for p in images.files_in(tmp_path)] == ["a.png", "b/1.PNG", "b/2.png"]


def test_a_folder_without_images_and_a_missing_path_are_errors(tmp_path):
    with pytest.raises(images.ImageError, match="no .png.* files in this folder"):
        images.files_in(tmp_path)
    with pytest.raises(images.ImageError, match="no such file or folder"):
        images.files_in(tmp_path / "missing.png")


def test_read_images_stacks_a_folder_and_refuses_mixed_sizes(tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.ones((2, 28, 28), np.uint8))
    assert images.read_images(tmp_path).shape == (3, 28, 28, 1)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(images.ImageError, match="different shapes"):
        images.read_images(tmp_path)
