"""Files that vanish while `train` runs: the steps done are kept in a checkpoint, the run ends with one line naming
the file and what to run, and it resumes once the dataset is whole again (issue 23)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.errors import TrainingError
from pipelines.progress import Reporter
from pipelines.training.loop import TrainRequest, run_train
from tests.conftest import build_tiny_dataset


class DeleteAfterFirstStep(Reporter):
    """Moves the photo set away once the first training step is done, as a user tidying the folder would."""

    def __init__(self, photos: Path, aside: Path):
        self.photos, self.aside, self.done = photos, aside, False

    def advance(self, key: str, n: int = 1, **fields) -> None:
        if key == "train" and not self.done:
            self.done = True
            shutil.move(str(self.photos), str(self.aside))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_photo_deleted_during_training_ends_in_one_line_and_resumes(tmp_path, workers):
    ds = build_tiny_dataset(tmp_path / "ds", size=72, with_smooth=False)
    run = tmp_path / "run"
    overrides = dict(dataset=str(ds.root), out=str(run), model="whitebox", vgg_weights="random", image_size=64,
                     batch_size=3, init_epochs=1, epochs=4, workers=workers, device="cpu", checkpoint_every=1000)
    reporter = DeleteAfterFirstStep(ds.root / "photo", tmp_path / "aside")
    with pytest.raises(TrainingError) as info:
        run_train(TrainRequest(overrides=overrides), reporter)
    line = str(info.value)
    assert "\n" not in line and "Traceback" not in line
    assert str(ds.root / "photo") in line and "--check" in line and "--resume" in line
    saved = sorted((run / "checkpoints").glob("step-*.pt"))
    assert saved and saved[-1].name != "step-0000000.pt"  # the steps done before the failure are kept
    shutil.move(str(tmp_path / "aside"), str(ds.root / "photo"))
    result = run_train(TrainRequest(overrides={**overrides, "workers": 0}, resume=True), Reporter())
    assert not result.stopped and result.step > int(saved[-1].stem.split("-")[1])
