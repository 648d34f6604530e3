"""The file mechanics every writer and reader shares (ganrun.runs.files) and the one image
conversion (ganrun.images)."""

from __future__ import annotations

import errno
import math
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.errors import GanrunError
from ganrun.images import Grid, Scatter, enlarged, gray_to_rgb, grid_image, save_grid, to_uint8
from ganrun.runs.files import (
    MetricsTable,
    atomic_write,
    natural_key,
    read_metrics_csv,
    set_aside,
)


def test_atomic_write_text_bytes_and_writer(tmp_path):
    assert atomic_write(tmp_path / "a" / "t.txt", "héllo\r\n").read_bytes() == "héllo\r\n".encode()
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "c.bin", lambda f: f.write(b"xyz"), durable=True)
    assert (tmp_path / "c.bin").read_bytes() == b"xyz"
    # A file made the usual way, not mkstemp's 0600: run folders stay readable to a group.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary file left


def test_atomic_write_failure_keeps_the_previous_file(tmp_path):
    path = atomic_write(tmp_path / "f.txt", "old")

    def full(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        GanrunError, match=r"could not write thing \(No space.*previous one is kept; fix"
    ):
        atomic_write(path, full, what="thing", fix="fix it")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    with pytest.raises(ZeroDivisionError):  # not an I/O error: raised as it is, still cleaned up
        atomic_write(path, lambda f: 1 / 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_write_where_no_folder_can_be(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GanrunError, match="could not write .*file/y.txt"):
        atomic_write(tmp_path / "file" / "y.txt", "z")


def test_natural_key():
    names = ["run/10", "run/2", "step_000100.png", "run/1", "step_000020.png"]
    assert sorted(names, key=natural_key) == [
        "run/1",
        "run/2",
        "run/10",
        "step_000020.png",
        "step_000100.png",
    ]


def test_metrics_csv_reading_trusts_only_whole_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    assert read_metrics_csv(path) == MetricsTable()
    # a row of another width, a step that is no number, and a last line still being written
    # ("0.1" could be the start of "0.1234"): left out and counted, never read as numbers
    path.write_text("step,loss,sec_per_step\n1,0.5,0.1\n2,nan,0.1\n3,0.2\nx,1,1\n4,0.3,0.1")
    table = read_metrics_csv(path)
    assert table.header == ["step", "loss", "sec_per_step"] and table.damaged == 3
    columns = table.columns()
    assert columns["step"] == [1.0, 2.0] and math.isnan(columns["loss"][1])
    path.write_text("step,loss\n1,oops\n")
    assert math.isnan(read_metrics_csv(path).columns()["loss"][0])


def test_set_aside_keeps_a_copy(tmp_path, caplog):
    path = tmp_path / "eval.csv"
    path.write_text("damaged")
    with caplog.at_level("WARNING", logger="ganrun"):
        aside = set_aside(path, "does not parse")
    assert aside.read_text() == "damaged" and aside.name == "eval.csv.damaged"
    assert "does not parse; a copy is kept as" in caplog.text


def test_uint8_conversion_of_gray_and_rgb() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = gray_to_rgb(to_uint8(x, (-1.0, 1.0)))
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [0, 0, 0]
    assert out[0, 0].flatten().tolist() == [0, 128, 255, 255]  # 127.5: half to even
    assert torch.equal(out[0, 0], out[0, 2])
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.equal(gray_to_rgb(to_uint8(rgb, (0.0, 1.0))), (rgb * 255).round().to(torch.uint8))
    with pytest.raises(GanrunError, match="2-channel"):
        gray_to_rgb(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


def test_grids_hold_the_uint8_pixels(tmp_path):
    images = torch.rand(5, 1, 6, 6)
    grid = grid_image(images, (0.0, 1.0), nrow=2)
    assert grid.shape == (3, 3 * 8 + 2, 2 * 8 + 2)  # 3 rows of 2, 2-pixel padding
    pixels = to_uint8(images, (0.0, 1.0))
    assert torch.equal(grid[0, 2:8, 2:8], pixels[0, 0]) and torch.equal(
        grid[1, 2:8, 10:16], pixels[1, 0]
    )
    path = save_grid(images, tmp_path / "g.png", (0.0, 1.0), nrow=2)
    assert torch.equal(torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1), grid)


def test_grids_are_enlarged_by_a_whole_factor_into_blocks(tmp_path):
    image = torch.arange(2 * 3 * 5, dtype=torch.uint8).view(2, 3, 5)
    big = enlarged(image, 12)  # 5 px wide: 3 times is the least that reaches 12
    assert big.shape == (2, 9, 15)
    assert torch.equal(big[:, ::3, ::3], image) and torch.equal(big[:, 1::3, 2::3], image)
    assert enlarged(image, 5) is image and enlarged(image, 0) is image
    path = save_grid(torch.rand(4, 1, 6, 6), tmp_path / "g.png", (0.0, 1.0), 2, min_width=100)
    assert Image.open(path).size == (6 * 18, 6 * 18)  # 18 px grid: 6 times
    # A plot has its own size: the width is for grids only.
    points = torch.randn(50, 2)
    assert Scatter("s", points, None, None).save(tmp_path, 4000).is_file()


def test_figures_save_themselves(tmp_path):
    grid = Grid("step_000001", torch.zeros(4, 3, 8, 8), (-1.0, 1.0)).save(tmp_path)
    assert grid.name == "step_000001.png" and Image.open(grid).size == (2 * 10 + 2, 2 * 10 + 2)
    points = torch.randn(50, 2)
    scatter = Scatter("step_000001_points", points, points, points[:3], "step 1").save(tmp_path)
    assert scatter.stat().st_size > 1000
