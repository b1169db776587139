"""A full disk or a read-only output folder stops a command at the first failed write, in one line naming the folder,
with what was written before it kept (issue 23: make-smooth, make-sketch, stylize and colorize printed one warning per
remaining file first). The errors are simulated: no probe fills a real disk."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.data.importing import add_images
from pipelines.data.manifest import Dataset
from pipelines.fileio import write_image
from pipelines.models.animegan import GeneratorV2
from pipelines.models.style2paints import Style2PaintsGenerator
import pipelines.models.vgg as vgg  # build_vgg_fc1 looked up at call time: conftest builds the random one once
from pipelines.models.weights import save_generator

from conftest import skimage_photo

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page")
FAILS = {errno.ENOSPC: "No space left on device; free some space and run the same command again",
         errno.EROFS: "the folder is on a read-only file system"}


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def _failing_after(module, n_ok: int, code: int, monkeypatch) -> list[Path]:
    """Make `module.write_image` succeed `n_ok` times, then fail like a full disk (or a read-only folder)."""
    real, calls = module.write_image, []

    def write(path, *args, **kwargs):
        calls.append(Path(path))
        if len(calls) > n_ok:
            raise OSError(code, {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system"}[code], str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, "write_image", write)
    return calls


def _one_line(res, folder: Path, code: int) -> None:
    text = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert f"{folder}: " in text and FAILS[code] in text, res.output
    assert res.output.count("warning") == 0, res.output  # not one line per file left


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_make_smooth_stops_at_the_first_full_disk_error(tmp_path, monkeypatch, code):
    import pipelines.data.derived as derived

    for name in NAMES:
        write_image(tmp_path / "frames" / f"{name}.png", skimage_photo(name, 40))
    add_images([tmp_path / "frames"], "style", tmp_path / "ds")
    calls = _failing_after(derived, 3, code, monkeypatch)
    res = _cli("make-smooth", str(tmp_path / "ds"), "-j", "1")  # in this process, so the simulated disk applies
    _one_line(res, tmp_path / "ds" / "smooth", code)
    assert len(calls) == 4  # stopped at the first failure
    assert "3 twins made before it are kept" in " ".join(res.output.split())
    assert len(Dataset.open(tmp_path / "ds").manifest.records("smooth")) == 3
    monkeypatch.undo()
    res = _cli("make-smooth", str(tmp_path / "ds"), "-j", "1")  # space freed: it continues
    assert res.exit_code == 0, res.output
    assert len(Dataset.open(tmp_path / "ds").manifest.records("smooth")) == len(NAMES)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_stylize_stops_at_the_first_full_disk_error(tmp_path, monkeypatch, code):
    import pipelines.inference.stylize as stylize

    for name in NAMES:
        write_image(tmp_path / "in" / f"{name}.png", skimage_photo(name, 32))
    torch.manual_seed(0)
    torch.save(GeneratorV2().state_dict(), tmp_path / "g.pt")
    calls = _failing_after(stylize, 2, code, monkeypatch)
    res = _cli("stylize", str(tmp_path / "in"), "-w", str(tmp_path / "g.pt"), "-o", str(tmp_path / "out"), "--batch-size", "1")
    _one_line(res, tmp_path / "out", code)
    assert len(calls) < len(NAMES)  # it did not go on through every photo
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(p.name for p in calls[:2])


def test_colorize_stops_at_the_first_full_disk_error(tmp_path, monkeypatch):
    import pipelines.inference.colorize as colorize
    from pipelines.data.sketches import xdog

    for name in NAMES[:5]:
        lines = xdog(skimage_photo(name, 48))
        write_image(tmp_path / "sk" / f"{name}.png", lines[:, :, None].repeat(3, axis=2))
    write_image(tmp_path / "ref.png", skimage_photo("astronaut", 64))
    torch.manual_seed(1)
    save_generator(Style2PaintsGenerator(), "style2paints_v1", {}, tmp_path / "w",
                   meta={"vgg_weights": "random", "vgg_fingerprint": vgg.build_vgg_fc1("random").fingerprint()})
    calls = _failing_after(colorize, 1, errno.ENOSPC, monkeypatch)
    res = _cli("colorize", str(tmp_path / "sk"), "-r", str(tmp_path / "ref.png"), "-w", str(tmp_path / "w"),
               "-o", str(tmp_path / "out"))
    _one_line(res, tmp_path / "out", errno.ENOSPC)
    assert len(calls) == 2
