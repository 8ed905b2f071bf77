"""PLOP and DKD resumed through an epoch checkpoint reach bit-identical records; PLOP's resumed
step uses the entropy thresholds saved with the checkpoint, not a new pass."""

from __future__ import annotations

import pytest
import torch

from bench.engine import hooks
from bench.engine.runner import Runner
from methods.plop import PLOP
from tests.engine_helpers import records, spec_of


class Interrupted(Exception):
    pass


def interrupt_after_first_epoch_of_step1(monkeypatch) -> None:
    original = hooks.EpochCheckpoint.after_epoch

    def after_epoch(self, trainer):
        original(self, trainer)  # the checkpoint is written first
        if trainer.step == 1 and trainer.epoch == 0:
            raise Interrupted

    monkeypatch.setattr(hooks.EpochCheckpoint, "after_epoch", after_epoch)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["plop", "dkd"])
def test_resume_through_an_epoch_checkpoint_is_bit_identical(tmp_path, monkeypatch, one_thread,
                                                             method):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    overrides = ("trainer.epochs=1", "trainer.epochs_incremental=2")
    reference = Runner(spec_of("voc-15-5", method, tmp_path / "reference", *overrides),
                       log=lambda _: None)
    reference.run()

    spec = spec_of("voc-15-5", method, tmp_path / "resumed", *overrides)
    with monkeypatch.context() as patch:
        interrupt_after_first_epoch_of_step1(patch)
        with pytest.raises(Interrupted):
            Runner(spec, log=lambda _: None).run()
    runner = Runner(spec, log=lambda _: None)
    assert (runner.run_dir.step_dir(1) / "epoch.pt").is_file()
    assert not runner.run_dir.is_done(1)
    with monkeypatch.context() as patch:
        if method == "plop":  # a new pass would give other thresholds: the saved ones win
            def other_thresholds(self, context):
                self.thresholds, self.max_entropy = torch.zeros(21), 1.0

            patch.setattr(PLOP, "compute_thresholds", other_thresholds)
        messages: list[str] = []
        runner = Runner(spec, log=messages.append)
        runner.run()
    assert any("resuming after epoch 1 of 2" in m for m in messages)
    assert records(runner.run_dir.path) == records(reference.run_dir.path)
    assert len(records(runner.run_dir.path)) == 2
