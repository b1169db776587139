"""Names near the file system's 255-byte limit (issue 23): a name that fits must import and stylize, whatever the
temporary names of the atomic writes add."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from animegan_cli.app import app
from pipelines.data.manifest import Dataset
from pipelines.fileio import atomic_write_bytes, encode_image
from pipelines.models.animegan import GeneratorV2
from tests.conftest import skimage_photo


def _long_names(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for k, length in enumerate((238, 240, 246, 251)):  # bytes of the whole name, ".png" included
        name = ("é" * 3 + f"{k}-" + "x" * 300)  # multi-byte characters too
        stem = name.encode()[: length - 4].decode("utf-8", "ignore")
        path = folder / f"{stem}.png"
        assert len(path.name.encode()) <= 255
        path.write_bytes(encode_image(skimage_photo(("astronaut", "coffee", "chelsea", "rocket")[k], 32), ".png"))
        out.append(path)
    return out


def test_long_names_import_and_stylize(tmp_path: Path):
    photos = _long_names(tmp_path / "in")
    res = CliRunner().invoke(app, ["add-images", str(tmp_path / "in"), "--dataset", str(tmp_path / "ds"), "--set", "photo",
                                   "--new-set"])
    assert res.exit_code == 0, res.output
    assert len(Dataset.open(tmp_path / "ds").manifest.records("photo")) == len(photos)
    # The same files again under new bytes: the numbered names (`stem-1.png`) must fit as well.
    for p in photos:
        p.write_bytes(encode_image(skimage_photo("coffee", 30), ".png"))
    res = CliRunner().invoke(app, ["add-images", str(tmp_path / "in"), "--dataset", str(tmp_path / "ds"), "--set", "photo"])
    assert res.exit_code == 0, res.output
    assert len(Dataset.open(tmp_path / "ds").manifest.records("photo")) == len(photos) + 1  # 3 identical: duplicates
    torch.manual_seed(0)
    torch.save(GeneratorV2().state_dict(), tmp_path / "w.pt")
    res = CliRunner().invoke(app, ["stylize", str(tmp_path / "in"), "--weights", str(tmp_path / "w.pt"), "--out",
                                   str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == sorted(p.name for p in photos)
    atomic_write_bytes(tmp_path / "out" / photos[-1].name, b"x")  # the 251-byte name through the atomic writer
