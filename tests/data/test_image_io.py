import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf.data import image_io
from fvq_hf.data.image_io import (
    ImageReadError,
    load_image,
    prepare_images,
    resize_center_crop,
    tensor_to_pil,
    to_rgb,
)


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("RGBA", lambda: Image.new("RGBA", (8, 6), (255, 0, 0, 0))),
        ("LA", lambda: Image.new("LA", (8, 6), (10, 0))),
        ("L", lambda: Image.new("L", (8, 6), 128)),
        ("1", lambda: Image.new("1", (8, 6), 1)),
        ("CMYK", lambda: Image.new("CMYK", (8, 6), (0, 0, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)),
        ("F", lambda: Image.fromarray(np.linspace(-1, 1, 48, dtype=np.float32).reshape(6, 8))),
    ],
)
def test_every_mode_becomes_rgb(mode, make):
    image = make()
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (8, 6)


def test_transparency_is_composited_on_white():
    assert to_rgb(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_uses_the_full_range():
    array = np.array([[0, 65535]], dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(array)))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]


def test_a_missing_or_corrupt_file_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(ImageReadError, match="corrupt.png"):
        load_image(bad)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        load_image(text)


def test_huge_images_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ImageReadError, match="downscale"):
        load_image(tmp_path / "big.png")


def test_the_shorter_side_is_resized_then_the_centre_cropped():
    image = Image.new("RGB", (300, 100))
    image.paste((255, 0, 0), (100, 0, 200, 100))  # a red centre square
    out = resize_center_crop(image, 50)
    assert out.size == (50, 50)
    assert out.getpixel((25, 25)) == (255, 0, 0)


def test_prepare_images_accepts_every_type(tmp_path):
    pil = Image.new("RGB", (40, 30), (255, 0, 0))
    pil.save(tmp_path / "red.png")
    array = np.zeros((30, 40, 3), dtype=np.uint8)
    floats = np.ones((30, 40), dtype=np.float32)
    tensor = -torch.ones(3, 30, 40)
    batch = prepare_images([pil, array, floats, tensor, tmp_path / "red.png"], 16)
    assert batch.shape == (5, 3, 16, 16)
    assert batch[0, 0].min() == 1.0 and batch[0, 1].max() == -1.0  # red
    assert batch[1].max() == -1.0 and batch[2].min() == 1.0 and batch[3].max() == -1.0
    assert prepare_images(torch.zeros(2, 3, 20, 20), 8).shape == (2, 3, 8, 8)


def test_prepare_images_refuses_what_is_not_an_image():
    with pytest.raises(TypeError, match="Unsupported image type"):
        prepare_images([{"not": "an image"}], 8)
    with pytest.raises(ValueError, match="No images"):
        prepare_images([], 8)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        prepare_images([torch.zeros(5, 8, 8)], 8)
    with pytest.raises(ValueError, match="dtype"):
        prepare_images([np.zeros((4, 4), dtype=np.int64)], 8)


def test_an_image_survives_the_round_trip_through_a_tensor_exactly():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    tensor = image_io.pil_to_tensor(image)
    assert tensor.shape == (3, 8, 8)
    assert np.array_equal(np.asarray(tensor_to_pil(tensor)[0]), np.asarray(image))
