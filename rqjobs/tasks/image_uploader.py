"""The built-in ``create-image-set`` task: resized copies of one image, one per size.

Each size is the length in pixels of the copy's *longest* side; the aspect ratio is
kept. Images are never enlarged: a size at or above the original's longest side
gives a copy at the original dimensions (still written, under the size's name, so a
caller can always rely on ``<stem>-<size>.<ext>`` existing).

The copy keeps the source's format and extension (PNG stays PNG, JPEG stays JPEG);
formats Pillow can read but not write are saved as PNG. The EXIF orientation is
applied, so a phone photo's copies are the right way up. Only the first frame of an
animated image is used.

Pillow is imported inside the functions: the CLI imports this module to build its
commands and ``rqjobs --help`` must stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rqjobs.config import current_settings
from rqjobs.exceptions import ImageError, InvalidTaskArguments
from rqjobs.tasks.commons import background_task, set_task_progress

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from rqjobs.config import Settings

#: JPEG/WebP quality of the copies: visually lossless at a fraction of the size
LOSSY_QUALITY = 90


def _sizes(size: object, settings: Settings) -> list[int]:
    """The requested sizes in order, duplicates dropped; the configured ones when none are given."""
    if size is None or (isinstance(size, Iterable) and not isinstance(size, (str, bytes)) and not size):
        values: Iterable[object] = settings.image_sizes
    elif isinstance(size, int):
        values = [size]
    elif isinstance(size, Iterable) and not isinstance(size, (str, bytes)):
        values = size
    else:
        raise InvalidTaskArguments(f"size must be a list of integers, got {size!r}")
    sizes: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTaskArguments(f"size must be a whole number of pixels, got {value!r}")
        if value <= 0:
            raise InvalidTaskArguments(f"size must be positive, got {value}")
        if value not in sizes:
            sizes.append(value)
    if not sizes:
        raise InvalidTaskArguments("no sizes given and image_sizes is empty in the configuration")
    return sizes


def _output_dir(output_dir: object, settings: Settings) -> Path:
    """The folder for the copies (not created here: validating must not write anything)."""
    if output_dir is not None and output_dir != "":
        if not isinstance(output_dir, (str, os.PathLike)):
            raise InvalidTaskArguments(f"output_dir must be a path, got {output_dir!r}")
        out = Path(output_dir).expanduser()
    else:
        out = settings.image_output_dir or settings.data_dir / "images"
    if out.exists() and not out.is_dir():
        raise InvalidTaskArguments(f"output_dir is not a folder: {out}")
    return out


def _source(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise InvalidTaskArguments("path must name an image file")
    source = Path(path).expanduser()
    if not source.is_file():
        raise InvalidTaskArguments(f"image not found (or not a file): {path}")
    if not os.access(source, os.R_OK):
        raise InvalidTaskArguments(f"image is not readable: {path}")
    return source


def validate_create_image_set(kwargs: dict[str, object]) -> dict[str, object]:
    """Refuse bad input in the enqueuing process, before a row exists (the CLI exits 2).

    Checks that the file exists and the sizes are positive; whether the file is an
    image is left to the task, so enqueuing never loads Pillow. Returns the arguments
    with ``path`` and a given ``output_dir`` made absolute: they are checked against the
    enqueuer's working directory, and the worker may run in another.
    """
    settings = current_settings()
    source = _source(kwargs.get("path"))
    _sizes(kwargs.get("size"), settings)
    out = _output_dir(kwargs.get("output_dir"), settings)
    # abspath, not resolve(): the copies are named after the path given, even a symlink
    normalised = {**kwargs, "path": os.path.abspath(source)}
    if kwargs.get("output_dir") not in (None, ""):
        normalised["output_dir"] = os.path.abspath(out)
    return normalised


def scaled_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the longest side ``longest`` and the same aspect ratio; never larger than given."""
    if longest >= max(width, height):
        return width, height
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(source: Path) -> tuple[Image, str]:
    """The decoded first frame, upright, plus its format; clear errors for non-images."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(source) as img:
            fmt = img.format or "PNG"
            img.load()
            upright = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise ImageError(f"not an image: {source} (Pillow cannot identify its format)") from None
    except PILImage.DecompressionBombError as exc:
        raise ImageError(f"image too large to resize safely: {source}: {exc}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {source}: {exc}") from exc
    return upright, fmt


def _save_options(fmt: str, img: Image) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = LOSSY_QUALITY
    if fmt in ("JPEG", "PNG"):
        options["optimize"] = True
    icc = img.info.get("icc_profile")
    if icc and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["icc_profile"] = icc
    return options


def _for_format(img: Image, fmt: str) -> Image:
    """Convert modes the target format cannot store (RGBA/P into JPEG, ...)."""
    if fmt == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        return img.convert("RGB")
    if fmt in ("PNG", "WEBP", "GIF") and img.mode == "CMYK":
        return img.convert("RGB")
    return img


def _write(img: Image, target: Path, fmt: str) -> None:
    """Save atomically: a reader never sees a half-written copy, and a re-run just replaces it."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        _for_format(img, fmt).save(tmp, format=fmt, **_save_options(fmt, img))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@background_task(name="create-image-set", validate=validate_create_image_set)
def create_image_set(path: str, size: list[int] | None = None, output_dir: str | None = None) -> dict:
    """Make resized copies of an image, one per --size (longest side in pixels, never enlarged).

    Example: rqjobs enqueue create-image-set --description "avatars" --path photo.jpg
    --size 64 --size 256 --output-dir out/
    """
    from PIL import Image as PILImage

    settings = current_settings()
    source = _source(path)
    sizes = _sizes(size, settings)
    out = _output_dir(output_dir, settings)

    set_task_progress(5, f"reading {source.name}")
    original, fmt = _open(source)
    ext = source.suffix or "." + fmt.lower()
    if fmt not in PILImage.SAVE:
        fmt, ext = "PNG", ".png"
    # resampling a palette image would fall back to nearest-neighbour: go to RGB(A) first
    if original.mode in ("P", "1"):
        original = original.convert("RGBA" if "transparency" in original.info else "RGB")
    out.mkdir(parents=True, exist_ok=True)

    files: list[dict[str, Any]] = []
    for index, longest in enumerate(sizes, start=1):
        width, height = scaled_size(original.width, original.height, longest)
        copy = original
        if (width, height) != original.size:
            copy = original.resize((width, height), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
        target = out / f"{source.stem}-{longest}{ext}"
        try:
            _write(copy, target, fmt)
        except OSError as exc:
            raise ImageError(f"cannot write {target}: {exc}") from exc
        files.append(
            {
                "size": longest,
                "path": str(target.resolve()),
                "width": width,
                "height": height,
                "bytes": target.stat().st_size,
            }
        )
        set_task_progress(5 + 90 * index // len(sizes), f"{longest}px: {width}x{height}")
    return {"source": str(source.resolve()), "files": files}
