"""create-image-set through the CLI and a real worker, on images generated with Pillow."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.conftest import Project
from tests.helpers import assert_refused, configure, read_row, row_count, work_in


def test_resized_copies_with_a_worker_in_another_folder(project: Project, tmp_path: Path) -> None:
    configure(project, image_sizes=[32])
    (project.root / "pics").mkdir()
    Image.new("RGB", (640, 480), "orange").save(project.root / "pics" / "photo.png")
    Image.new("RGB", (300, 600), "navy").save(project.root / "pics" / "tall.jpg")
    (project.root / "pics" / "notes.png").write_text("a shopping list, not a picture\n")

    # relative --path and --output-dir: checked in the project folder, used by a worker elsewhere
    sized = project.enqueue(
        "create-image-set", "--path", "pics/photo.png", "--size", "64", "--size", "256",
        "--output-dir", "out", description="thumbnails",
    )  # fmt: skip
    configured = project.enqueue("create-image-set", "--path", "pics/tall.jpg", "--output-dir", "out")
    not_image = project.enqueue("create-image-set", "--path", "pics/notes.png", "--size", "64")
    row = read_row(project, sized)
    assert row.kwargs["path"] == str(project.root / "pics" / "photo.png")
    assert row.kwargs["output_dir"] == str(project.root / "out")

    work_in(tmp_path / "elsewhere", project)

    row = read_row(project, sized)
    assert row.status == "finished", row.log
    assert row.progress == 100 and row.progress_message == "256px: 256x192"
    assert row.result["source"] == str(project.root / "pics" / "photo.png")
    files = row.result["files"]
    assert [(f["size"], f["width"], f["height"]) for f in files] == [(64, 64, 48), (256, 256, 192)]
    for entry in files:
        path = Path(entry["path"])
        assert path.parent == project.root / "out"
        assert entry["bytes"] == path.stat().st_size > 0
        with Image.open(path) as img:  # the files really are images of the sizes reported
            assert img.format == "PNG"
            assert img.size == (entry["width"], entry["height"])

    # no --size: the sizes come from the config's image_sizes; a JPEG stays a JPEG
    row = read_row(project, configured)
    assert row.status == "finished", row.log
    [entry] = row.result["files"]
    assert entry["path"] == str(project.root / "out" / "tall-32.jpg")
    with Image.open(entry["path"]) as img:
        assert img.format == "JPEG" and img.size == (16, 32)
    assert sorted(p.name for p in (project.root / "out").iterdir()) == [
        "photo-256.png",
        "photo-64.png",
        "tall-32.jpg",
    ]

    row = read_row(project, not_image)
    assert row.status == "failed" and row.attempts == 1 and row.result is None
    assert f"ImageError: not an image: {project.root / 'pics' / 'notes.png'}" in row.log
    assert "Pillow cannot identify its format" in row.log
    assert not (project.root / ".rqjobs" / "images").exists()  # nothing written for it


def test_bad_input_is_refused_before_any_row(project: Project) -> None:
    Image.new("RGB", (10, 10)).save(project.root / "i.png")
    (project.root / "a-file").write_text("x")
    cases = [
        (("--path", "missing.png"), "image not found"),
        (("--path", "."), "image not found"),
        (("--path", "i.png", "--size", "0"), "size must be positive"),
        (("--path", "i.png", "--output-dir", "a-file"), "output_dir is not a folder"),
    ]
    for args, needle in cases:
        result = project.rqjobs("enqueue", "create-image-set", "--description", "bad", *args)
        assert_refused(result, needle)
    assert row_count(project) == 0
