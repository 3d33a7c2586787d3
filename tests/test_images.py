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


def test_a_real_tree_s_files_are_read_or_passed_over_one_by_one(tmp_path):
    """What real trees hold (ImageNet's train split has a PNG named .JPEG and CMYK JPEGs; downloads have truncated and
    empty files): every readable kind is read as 8-bit RGB in name order, an unreadable one is passed over for the next
    image and listed once with why; a class with too few readable images fails in one line that says what was skipped."""
    import io

    from pipeline.clone.dataset import ImageFolderDataset

    folder = tmp_path / "tree" / "tench"
    folder.mkdir(parents=True)
    full = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 200)).save(full, format="JPEG")
    (folder / "a_truncated.JPEG").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (folder / "b_empty.JPEG").write_bytes(b"")
    (folder / "c_text.JPEG").write_bytes(b"<html>404 not found</html>")
    save(folder, "d_cmyk.JPEG", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), format="JPEG")
    save(folder, "e_png_named.JPEG", Image.new("RGB", (16, 16), (0, 200, 0)), format="PNG")
    save(folder, "f_16bit.png", Image.fromarray(np.full((16, 16), 40000, np.uint16)))
    save(folder, "g_grey.png", Image.new("L", (16, 16), 90))
    save(folder, "h_rgba.png", Image.new("RGBA", (16, 16), (200, 30, 30, 128)))
    save(folder, "i_large.JPEG", Image.new("RGB", (6000, 6000), (90, 90, 90)), format="JPEG", quality=50)
    data = ImageFolderDataset(str(tmp_path / "tree"), inputs_per_class=6)
    cls = data.classes()[0]
    inputs = data.inputs(cls)
    assert [i.ref for i in inputs] == ["tench/d_cmyk.JPEG", "tench/e_png_named.JPEG", "tench/f_16bit.png", "tench/g_grey.png",
                                       "tench/h_rgba.png", "tench/i_large.JPEG"]
    assert all(i.image.mode == "RGB" for i in inputs) and inputs[-1].image.size == (6000, 6000)
    skipped = data.skipped(cls)
    assert [s["file"] for s in skipped] == ["tench/a_truncated.JPEG", "tench/b_empty.JPEG", "tench/c_text.JPEG"]
    assert "is empty (0 bytes)" in skipped[1]["why"] and "cannot be read as an image" in skipped[2]["why"]
    data.inputs(cls)  # read again (a retried unit): nothing is listed twice
    assert len(data.skipped(cls)) == 3
    with pytest.raises(InputError, match=r"has 6 readable images .* 3 unreadable skipped .*: input 7 is needed"):
        ImageFolderDataset(str(tmp_path / "tree"), inputs_per_class=7).inputs(cls)
