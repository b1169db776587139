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
    import pipelines.data.inspect as inspect_module

    monkeypatch.setattr(inspect_module, "MAX_LISTED_PROBLEMS", 5)  # the command reads it when it runs
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


def said(res) -> str:
    return " ".join(res.output.split())


def test_deleted_frames_are_named_then_pruned_with_their_twins(ds: Dataset):
    """The first thing users do after extract-frames: delete bad frames by hand."""
    import os
    import time

    from pipelines.fileio import encode_image
    from conftest import skimage_photo

    assert runner.invoke(app, ["make-smooth", str(ds.root), "-q"]).exit_code == 0  # real twins first
    (ds.root / "style" / "rocket.png").unlink()
    (ds.root / "style" / "coffee.png").unlink()
    smooth = runner.invoke(app, ["make-smooth", str(ds.root), "-q"])
    assert smooth.exit_code == 3
    assert "2 files listed in the manifest are gone (first: style/coffee.png)" in said(smooth)
    assert f"animegan dataset {ds.root} --prune" in said(smooth)
    dry = runner.invoke(app, ["train", str(ds.root), "--dry-run", "--vgg-weights", "random"])
    assert dry.exit_code == 3 and "--prune" in said(dry)

    # an edited frame, and a temporary file a killed command left an hour ago
    edited = encode_image(skimage_photo("chelsea", 40)[:, ::-1], ".png")
    (ds.root / "style" / "astronaut.png").write_bytes(edited)
    tmp = ds.root / "style" / ".f0001.a1b2c3.tmp.png"
    tmp.write_bytes(b"half")
    os.utime(tmp, (time.time() - 3600, time.time() - 3600))
    assert "1 stale temporary file" in runner.invoke(app, ["dataset", str(ds.root)]).output

    res = runner.invoke(app, ["dataset", str(ds.root), "--prune"])
    assert res.exit_code == 0, res.output
    text = said(res)
    assert "dropped from the manifest, file gone (2): style/coffee.png, style/rocket.png" in text
    assert "derived twins deleted with their source (2): smooth/coffee.png, smooth/rocket.png" in text
    assert "re-recorded, file changed (1): style/astronaut.png" in text
    assert "twins now out of date (run `animegan make-smooth` to remake them) (1): smooth/astronaut.png" in text
    assert "stale temporary files deleted (1)" in text and not tmp.exists()
    assert not (ds.root / "smooth" / "coffee.png").exists()
    m = Dataset.open(ds.root).manifest
    assert {r.path for r in m.records("style")} == {f"style/{n}.png" for n in SKIMAGE_PHOTOS if n not in ("coffee", "rocket")}
    rec = m.find("style", "style/astronaut.png")
    assert (rec.width, rec.height) == (60, 40)  # the edited image (chelsea at short side 40), not the old one

    redo = runner.invoke(app, ["make-smooth", str(ds.root)])
    assert redo.exit_code == 0 and "1 smoothed" in said(redo)  # only the edited frame's twin is remade
    assert runner.invoke(app, ["dataset", str(ds.root), "--check"]).exit_code == 0
    again = runner.invoke(app, ["dataset", str(ds.root), "--prune"])
    assert "nothing to prune" in said(again)


def test_a_prune_killed_after_its_manifest_write_is_finished_by_the_next(ds: Dataset, monkeypatch):
    """Issue 23: a prune killed right after writing the manifest left its twins untracked, and the next prune said
    'nothing to prune'. The files it was about to delete are journalled; the next prune deletes them."""
    import pipelines.data.inspect as inspect

    smooth = sorted((ds.root / "smooth").glob("*.png"))
    assert smooth  # the tiny dataset has twins
    for f in (ds.root / "style").glob("*.png"):
        f.unlink()  # every source gone: every twin is to be deleted

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the manifest write and the deletes

    monkeypatch.setattr(inspect, "_delete_twins", killed)
    with pytest.raises(KeyboardInterrupt):
        inspect.prune(ds.root)
    assert all(f.exists() for f in smooth)  # untracked now: no record lists them
    assert not Dataset.open(ds.root).manifest.records("smooth")
    assert (ds.root / inspect.PRUNE_JOURNAL).is_file()
    monkeypatch.undo()

    again = inspect.prune(ds.root)
    assert sorted(again.removed_twins) == sorted(f.relative_to(ds.root).as_posix() for f in smooth)
    assert not any(f.exists() for f in smooth) and not (ds.root / inspect.PRUNE_JOURNAL).exists()
    assert not inspect.prune(ds.root).changed  # and then there is nothing left to do


def test_a_journalled_file_listed_again_is_kept(ds: Dataset):
    import pipelines.data.inspect as inspect

    listed = Dataset.open(ds.root).manifest.records("smooth")[0].path
    (ds.root / inspect.PRUNE_JOURNAL).write_text(json.dumps({"files": [listed, "../outside.png"]}))
    (ds.root.parent / "outside.png").write_bytes(b"keep")
    inspect.prune(ds.root)
    assert (ds.root / listed).exists() and (ds.root.parent / "outside.png").exists()
    assert not (ds.root / inspect.PRUNE_JOURNAL).exists()
