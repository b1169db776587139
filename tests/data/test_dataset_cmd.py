"""`animegan dataset`: summary, --check, --json and exit codes through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animegan_cli.app import app
from conftest import SKIMAGE_PHOTOS, build_tiny_dataset
from pipelines.data.inspect import summarize
from pipelines.data.manifest import Dataset

runner = CliRunner()


@pytest.fixture
def ds(tmp_path: Path) -> Dataset:
    return build_tiny_dataset(tmp_path / "ds", size=32)


def _json(*args: str) -> tuple[int, dict]:
    res = runner.invoke(app, ["dataset", *args, "--json"])
    return res.exit_code, json.loads(res.stdout)


def test_summary_of_a_clean_dataset(ds: Dataset):
    res = runner.invoke(app, ["dataset", str(ds.root)])
    assert res.exit_code == 0, res.output
    for word in ("photo", "smooth", "style", "images", "width min / median / max", "on disk", "ok"):
        assert word in res.stdout
    code, data = _json("--dataset", str(ds.root), "--check")
    assert code == 0 and data["ok"] and data["problems"] == [] and data["checked"]
    sets = {s["name"]: s for s in data["sets"]}
    assert set(sets) == {"photo", "style", "smooth"}
    photo = sets["photo"]
    assert photo["count"] == len(SKIMAGE_PHOTOS)
    widths = [r.width for r in ds.manifest.records("photo")]
    assert photo["width"]["min"] == min(widths) and photo["width"]["max"] == max(widths)
    assert min(photo["height"]["min"], photo["width"]["min"]) == 32  # short side of every image is 32
    assert photo["bytes_on_disk"] == sum((ds.root / r.path).stat().st_size for r in ds.manifest.records("photo"))
    assert sets["smooth"]["out_of_date"] == 0 and sets["photo"]["out_of_date"] is None
    assert photo["modified"] == 0


def test_deleted_and_modified_files_detected(ds: Dataset):
    (ds.root / "photo/astronaut.png").unlink()
    # Same size, different bytes: only a re-hash notices.
    p = ds.root / "style/coffee.png"
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))
    # Different size: noticed without --check.
    with open(ds.root / "photo/rocket.png", "ab") as fh:
        fh.write(b"junk")

    code, data = _json(str(ds.root))
    assert code == 0  # without --check the summary reports but does not fail
    sets = {s["name"]: s for s in data["sets"]}
    assert sets["photo"]["missing"] == 1 and sets["photo"]["stale"] == 1
    assert sets["style"]["modified"] is None
    assert len(data["problems"]) == 2

    res = runner.invoke(app, ["dataset", str(ds.root), "--check"])
    assert res.exit_code == 3
    assert "photo/astronaut.png: missing" in res.output
    assert "photo/rocket.png: size changed" in res.output
    assert "style/coffee.png: contents changed" in res.output
    assert "3 problems" in res.output


def test_smooth_out_of_date_with_style_source(ds: Dataset):
    with ds.transaction() as m:
        m.remove("style", "style/chelsea.png")
    s = summarize(ds.root, check=False)
    smooth = next(x for x in s.sets if x.name == "smooth")
    assert smooth.out_of_date == 1
    assert any("smooth/chelsea.png" in p and "no longer in the dataset" in p for p in s.problems)
    res = runner.invoke(app, ["dataset", str(ds.root), "--check", "-q"])
    assert res.exit_code == 3 and "smooth/chelsea.png" in res.output
    # The style file is still on disk but unlisted now.
    assert next(x for x in s.sets if x.name == "style").untracked == 1


def test_problem_list_is_capped(ds: Dataset, monkeypatch):
    import animegan_cli.data_commands as dc

    monkeypatch.setattr(dc, "MAX_LISTED_PROBLEMS", 5)
    for name in SKIMAGE_PHOTOS:
        for set_name in ("photo", "style", "smooth"):
            (ds.root / f"{set_name}/{name}.png").unlink()
    res = runner.invoke(app, ["dataset", str(ds.root), "--check", "-q"])
    assert res.exit_code == 3
    assert res.output.count("problem: ") == 5
    assert "... and 13 more problems" in res.output
    assert "18 problems found" in res.output


def test_missing_or_invalid_dataset(tmp_path: Path):
    res = runner.invoke(app, ["dataset", str(tmp_path / "nothing")])
    assert res.exit_code == 3 and "no dataset here" in res.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/manifest.json").write_text('{"schema_version": 1, "sets": {"style": [{"path": "../x"}]}}')
    res = runner.invoke(app, ["dataset", "--dataset", str(tmp_path / "bad")])
    assert res.exit_code == 3 and "manifest.json: sets.style.0" in res.output
    res = runner.invoke(app, ["dataset", str(tmp_path / "a"), "--dataset", str(tmp_path / "b")])
    assert res.exit_code == 2
