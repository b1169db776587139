"""Hostile and broken inputs: each is one line naming the file, the other inputs are still processed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.data.manifest import Dataset
from pipelines.fileio import write_image

from conftest import skimage_photo

runner = CliRunner()


def said(res) -> str:
    return " ".join(res.output.split())


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A 68-byte PNG whose header claims side x side pixels (decoding it would need gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(autouse=True)
def _limit_env(monkeypatch):
    # --max-pixels sets the environment of the process (so workers inherit it); keep tests apart.
    monkeypatch.delenv("ANIMEGAN_MAX_PIXELS", raising=False)


def test_decompression_bomb_is_refused_by_add_images_and_the_rest_imported(tmp_path):
    good = write_image(tmp_path / "in" / "good.png", skimage_photo("coffee", 32)) and tmp_path / "in" / "good.png"
    bomb_png(tmp_path / "in" / "bomb.png")
    res = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"), "-q"])
    assert res.exit_code == 1
    assert "bomb.png: 30000x30000 is 900 megapixels, over the limit of 120" in said(res) and "Traceback" not in res.output
    assert [r.path for r in Dataset.open(tmp_path / "ds").manifest.records("photo")] == ["photo/good.png"]
    assert good.exists()


def test_max_pixels_lowers_and_raises_the_limit(tmp_path):
    write_image(tmp_path / "in" / "p.png", skimage_photo("coffee", 64))  # 85x64
    low = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"),
                              "--max-pixels", "0.001", "-q"])
    assert low.exit_code == 1 and "over the limit of 0.001" in said(low)
    ok = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"),
                             "--max-pixels", "1", "-q"])
    assert ok.exit_code == 0, ok.output


def test_decompression_bomb_in_stylize(tmp_path):
    import torch

    from pipelines.models.animegan import GeneratorV2

    torch.manual_seed(0)
    weights = tmp_path / "g.pt"
    torch.save(GeneratorV2().state_dict(), weights)
    write_image(tmp_path / "in" / "ok.png", skimage_photo("rocket", 32))
    bomb_png(tmp_path / "in" / "bomb.png")
    res = runner.invoke(app, ["stylize", str(tmp_path / "in"), "--weights", str(weights), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 1 and "bomb.png: 30000x30000" in said(res)
    assert (tmp_path / "out" / "ok.png").exists() and not (tmp_path / "out" / "bomb.png").exists()
