"""Input images in every format a dataset folder may hold: read as 8-bit RGB, or refused in one line."""

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.images import load_image


def save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_greyscale_16_bit_and_transparent_images_read_as_8_bit_rgb(tmp_path):
    grey = save(tmp_path, "grey.png", Image.fromarray(np.full((8, 8), 100, np.uint8), "L"))
    deep = save(tmp_path, "deep.png", Image.fromarray(np.full((8, 8), 40000, np.uint16)))  # 16-bit PNG
    assert Image.open(deep).mode.startswith("I")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (200, 0, 0, 255)  # opaque red top half, fully transparent (black) bottom half
    alpha = save(tmp_path, "alpha.png", Image.fromarray(rgba, "RGBA"))
    for path in (grey, deep, alpha):
        im = load_image(path)
        assert im.mode == "RGB" and im.size == (8, 8)
    assert np.asarray(load_image(grey))[0, 0].tolist() == [100, 100, 100]
    assert np.asarray(load_image(deep))[0, 0].tolist() == [156, 156, 156]  # 40000 / 65535 of full scale, not clipped to 255
    a = np.asarray(load_image(alpha))
    assert a[0, 0].tolist() == [200, 0, 0] and a[7, 7].tolist() == [255, 255, 255]  # transparency on white, not black


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\)"),
    (b"not an image at all", "cannot be read as an image"),
    (None, "cannot be read as an image"),  # a PNG cut in half
])
def test_empty_corrupt_and_truncated_images_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is None:
        full = save(tmp_path, "full.png", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
        content = full.read_bytes()[:400]
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as e:
        load_image(path)
    assert "\n" not in str(e.value) and "bad.png" in str(e.value)
