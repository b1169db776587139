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


def _manifest_with(tmp_path: Path, **record_changes) -> Path:
    """A valid one-record dataset, then the record's fields replaced by hand (as a damaged file would be)."""
    import json

    ds = tmp_path / "ds"
    write_image(tmp_path / "in" / "p.png", skimage_photo("coffee", 32))
    assert runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(ds), "-q"]).exit_code == 0
    doc = json.loads((ds / "manifest.json").read_text())
    doc["sets"]["photo"][0].update(record_changes)
    (ds / "manifest.json").write_text(json.dumps(doc))
    return ds


@pytest.mark.parametrize("changes, problem", [
    ({"path": "photo/a\x00b.png"}, "holds a NUL character"),
    ({"path": "photo/\udc80.png"}, "not valid Unicode"),
    ({"width": 10**30}, "less than or equal to 1000000"),
    ({"width": True}, "Input should be a valid integer"),
    ({"bytes": "12"}, "Input should be a valid integer"),
])
def test_damaged_records_are_one_line(tmp_path, changes, problem):
    ds = _manifest_with(tmp_path, **changes)
    for cmd in (["dataset", str(ds), "--check"], ["train", str(ds), "--dry-run"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 3 and problem in said(res) and "manifest.json" in said(res), (cmd, res.output)
        assert "Traceback" not in res.output


def test_damaged_manifests_are_one_line(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    cases = {
        "deep": "[" * 200_000 + "]" * 200_000,
        "bool version": '{"schema_version": true, "sets": {}}',
    }
    for name, text in cases.items():
        (ds / "manifest.json").write_text(text)
        res = runner.invoke(app, ["dataset", str(ds)])
        assert res.exit_code == 3 and "manifest.json" in said(res) and "Traceback" not in res.output, name
    (ds / "manifest.json").unlink()
    (ds / "manifest.json").mkdir()
    res = runner.invoke(app, ["dataset", str(ds)])
    assert res.exit_code == 3 and "cannot read the manifest (a folder, not a regular file)" in said(res)


def test_a_full_disk_is_one_line(tmp_path, monkeypatch):
    import errno

    import pipelines.data.importing as importing

    def no_space(candidates, data, adoptable=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(next(iter(candidates))))

    monkeypatch.setattr(importing, "claim_write", no_space)
    write_image(tmp_path / "in" / "p.png", skimage_photo("coffee", 32))
    res = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "photo/p.png: No space left on device; free some space and run the same command again" in said(res)


def test_a_full_disk_while_checkpointing_says_so(tmp_path, monkeypatch):
    import torch

    from pipelines.errors import TrainingError
    from pipelines.training.checkpoints import list_checkpoints, save_checkpoint

    save_checkpoint(tmp_path, 1, {"step": 1}, keep=3)
    real_save = torch.save

    def torn(obj, f, *a, **k):  # what torch's zip writer raises when the disk fills mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed; unexpected pos 10770880 vs 10770768")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(TrainingError, match=r"step-0000002.pt: could not write the checkpoint .* MiB free on that disk"):
        save_checkpoint(tmp_path, 2, {"step": 2}, keep=3)
    monkeypatch.setattr(torch, "save", real_save)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]  # the previous one is kept, no half-written file
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_file_names_with_newlines_stay_on_one_line(tmp_path):
    bad = tmp_path / "in" / "two\nlines.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an image")
    write_image(tmp_path / "in" / "good.png", skimage_photo("coffee", 32))
    res = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"), "-q"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if "lines.png" in line]
    assert len(lines) == 1 and "two\\nlines.png" in lines[0]


def truncated_film(tmp_path: Path) -> Path:
    """A 4 s film with its index at the front (faststart), cut in half: players show 2 s, the index says 4."""
    import av
    import numpy as np

    full = tmp_path / "full.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "18", "preset": "ultrafast", "g": "10"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(100):
            for p in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_film_is_said_and_not_marked_complete(tmp_path):
    import json

    cut = truncated_film(tmp_path)
    ds = tmp_path / "ds"
    res = runner.invoke(app, ["extract-frames", str(cut), "--dataset", str(ds), "--every", "0.5", "--no-dedupe", "-q"])
    assert res.exit_code == 1
    assert "cut.mp4: decoding ended at 1.96 s of the 4.00 s the file states: it is truncated or damaged" in said(res)
    state = list(json.loads((ds / "manifest.json").read_text())["extractions"].values())[0]
    assert state["complete"] is False and state["kept"] == 4  # what was there is kept (0, 0.5, 1, 1.5 s)


def test_truncated_video_in_stylize_keeps_what_decoded_and_says_so(tmp_path):
    import av
    import torch

    from pipelines.models.animegan import GeneratorV2

    cut = truncated_film(tmp_path)
    torch.manual_seed(0)
    torch.save(GeneratorV2().state_dict(), tmp_path / "g.pt")
    res = runner.invoke(app, ["stylize", str(cut), "--weights", str(tmp_path / "g.pt"), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert "truncated or damaged" in said(res) and "has the 49 frames that could be decoded" in said(res)
    with av.open(str(tmp_path / "out" / "cut.mp4")) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 49


def test_a_damaged_png_is_one_line_and_nothing_else(tmp_path, capfd):
    """A bit flipped inside a PNG: our one line, and no "libpng error" printed by the decoder itself."""
    from pipelines.fileio import encode_image

    png = encode_image(skimage_photo("coffee", 48), ".png")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "flipped.png").write_bytes(png[:100] + bytes([png[100] ^ 0xFF]) + png[101:])
    res = runner.invoke(app, ["add-images", str(tmp_path / "in"), "--set", "photo", "--dataset", str(tmp_path / "ds"), "-q"])
    assert res.exit_code == 1 and "flipped.png: not a readable image" in said(res)
    assert "libpng" not in capfd.readouterr().err
