"""create-image-set on images generated with Pillow in a tmp folder.

The task function is called directly: outside an RQ job ``background_task`` is a
pass-through, so these tests need neither Redis nor a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from rqjobs.config import Settings, load_settings, set_current_settings
from rqjobs.exceptions import InvalidTaskArguments
from rqjobs.tasks.image_uploader import (
    ImageError,
    create_image_set,
    scaled_size,
    validate_create_image_set,
)

MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeSettings]:
    """Load settings from an explicit environment (nothing from the developer's) and install them."""
    monkeypatch.chdir(tmp_path)  # no rqjobs.toml of the developer's is picked up

    def make(**env: str) -> Settings:
        settings = load_settings(env={"RQJOBS_DATA_DIR": str(tmp_path / "data"), **env})
        set_current_settings(settings)
        return settings

    yield make
    set_current_settings(None)


def _image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str | None = None) -> Path:
    Image.new(mode, size, color="teal" if mode != "P" else 3).save(path, format=fmt)
    return path


def test_sizes_keep_aspect_ratio(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    source = _image(tmp_path / "wide.png", (800, 400))
    out = tmp_path / "out"
    result = create_image_set(path=str(source), size=[64, 256], output_dir=str(out))

    assert result["source"] == str(source.resolve())
    files = result["files"]
    assert [(f["width"], f["height"]) for f in files] == [(64, 32), (256, 128)]
    assert [Path(f["path"]).name for f in files] == ["wide-64.png", "wide-256.png"]
    for entry in files:
        path = Path(entry["path"])
        assert path.parent == out.resolve()
        assert entry["bytes"] == path.stat().st_size > 0
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.size == (entry["width"], entry["height"])
    assert sorted(p.name for p in out.iterdir()) == ["wide-256.png", "wide-64.png"]  # no tmp files


def test_portrait_jpeg_with_alpha_source_formats(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    tall = _image(tmp_path / "tall.jpg", (300, 900))
    result = create_image_set(path=str(tall), size=[90], output_dir=str(tmp_path / "o"))
    [entry] = result["files"]
    with Image.open(entry["path"]) as img:
        assert img.format == "JPEG" and img.size == (30, 90)

    # a palette GIF and an RGBA PNG keep their format
    gif = _image(tmp_path / "pal.gif", (100, 50), mode="P")
    rgba = _image(tmp_path / "alpha.png", (100, 50), mode="RGBA")
    for source, fmt in ((gif, "GIF"), (rgba, "PNG")):
        [entry] = create_image_set(path=str(source), size=[10], output_dir=str(tmp_path / "o"))["files"]
        with Image.open(entry["path"]) as img:
            assert img.format == fmt and img.size == (10, 5)


def test_never_upscales(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    source = _image(tmp_path / "small.png", (100, 40))
    result = create_image_set(path=str(source), size=[50, 100, 500], output_dir=str(tmp_path / "o"))
    assert [(f["size"], f["width"], f["height"]) for f in result["files"]] == [
        (50, 50, 20),
        (100, 100, 40),
        (500, 100, 40),
    ]
    assert Path(result["files"][2]["path"]).name == "small-500.png"


def test_defaults_come_from_settings(tmp_path: Path, make_settings: MakeSettings) -> None:
    settings = make_settings(RQJOBS_IMAGE_SIZES="32,16,32")
    source = _image(tmp_path / "sq.png", (64, 64))
    result = create_image_set(path=str(source))
    out = settings.data_dir / "images"
    assert [(Path(f["path"]).parent, f["width"]) for f in result["files"]] == [
        (out.resolve(), 32),
        (out.resolve(), 16),
    ]

    configured = tmp_path / "configured"
    make_settings(RQJOBS_IMAGE_SIZES="8", RQJOBS_IMAGE_OUTPUT_DIR=str(configured))
    [entry] = create_image_set(path=str(source))["files"]
    assert entry["path"] == str((configured / "sq-8.png").resolve())


def test_rerun_replaces_files(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    source = _image(tmp_path / "a.png", (40, 20))
    first = create_image_set(path=str(source), size=[10], output_dir=str(tmp_path / "o"))
    second = create_image_set(path=str(source), size=[10], output_dir=str(tmp_path / "o"))
    assert first == second
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a-10.png"]


def test_exif_orientation_is_applied(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    img = Image.new("RGB", (200, 100), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    source = tmp_path / "phone.jpg"
    img.save(source, exif=exif)
    [entry] = create_image_set(path=str(source), size=[50], output_dir=str(tmp_path / "o"))["files"]
    assert (entry["width"], entry["height"]) == (25, 50)


def test_not_an_image_raises_clearly(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match=r"not an image: .*notes\.png"):
        create_image_set(path=str(text), size=[64], output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "MISSING", "size": [64]}, "image not found"),
        ({"path": "FOLDER", "size": [64]}, "image not found"),
        ({"path": "IMAGE", "size": [0]}, "size must be positive, got 0"),
        ({"path": "IMAGE", "size": [64, -5]}, "size must be positive, got -5"),
        ({"path": "IMAGE", "size": ["big"]}, "whole number of pixels"),
        ({"path": "IMAGE", "size": [64], "output_dir": "FILE"}, "output_dir is not a folder"),
    ],
)
def test_validate_refuses(
    tmp_path: Path, make_settings: MakeSettings, kwargs: dict[str, object], match: str
) -> None:
    make_settings()
    image = _image(tmp_path / "i.png", (10, 10))
    placeholders = {
        "MISSING": str(tmp_path / "nope.png"),
        "FOLDER": str(tmp_path),
        "IMAGE": str(image),
        "FILE": str(image),
    }
    bound = {
        "output_dir": None,
        **{k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()},
    }
    with pytest.raises(InvalidTaskArguments, match=match):
        validate_create_image_set(bound)
    with pytest.raises(InvalidTaskArguments, match=match):
        create_image_set(**bound)  # type: ignore[arg-type]


def test_validate_accepts_good_input(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    image = _image(tmp_path / "i.png", (10, 10))
    validate_create_image_set({"path": str(image), "size": None, "output_dir": None})
    validate_create_image_set({"path": str(image), "size": [64, 128], "output_dir": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()  # validating creates nothing


def test_validate_does_not_load_pillow(tmp_path: Path) -> None:
    """Enqueuing happens in the CLI process: checking arguments must not import PIL."""
    import subprocess
    import sys

    image = tmp_path / "x.png"
    image.write_bytes(b"not even decoded")
    code = (
        "import sys\n"
        "from rqjobs.config import load_settings, set_current_settings\n"
        "from rqjobs.tasks.image_uploader import validate_create_image_set\n"
        f"set_current_settings(load_settings(env={{'RQJOBS_DATA_DIR': {str(tmp_path)!r}}}))\n"
        f"validate_create_image_set({{'path': {str(image)!r}, 'size': [8], 'output_dir': None}})\n"
        "assert 'PIL' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env_with_repo_on_path(), cwd=tmp_path)


@pytest.mark.parametrize(
    ("size", "longest", "expected"),
    [
        ((800, 400), 64, (64, 32)),
        ((400, 800), 256, (128, 256)),
        ((3, 1000), 10, (1, 10)),
        ((10, 10), 20, (10, 10)),
    ],
)
def test_scaled_size(size: tuple[int, int], longest: int, expected: tuple[int, int]) -> None:
    assert scaled_size(*size, longest) == expected


def _env_with_repo_on_path() -> dict[str, str]:
    """The child must import this checkout's rqjobs whether or not it is pip-installed."""
    import os

    import rqjobs.config

    repo = str(Path(rqjobs.config.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
