"""The callable a job runs: one run (or just its step 0), resumable, requeued on preemption.

A job holds only the resolved spec and the steps to run; all progress lives in the store, so
on a time-out or a preemption submitit requeues the same call and `Runner.run` skips the done
steps and continues the current one from its last epoch checkpoint.
"""

from __future__ import annotations

from typing import Any

import submitit

from bench.spec import RunSpec


class RunJob(submitit.helpers.Checkpointable):
    """Run `steps` (None: all) of `spec`."""

    def __init__(self, spec: RunSpec, steps: list[int] | None = None) -> None:
        self.spec = spec
        self.steps = steps

    def __call__(self) -> dict[str, Any]:
        import torch

        from bench.engine import distributed
        from bench.engine.runner import Runner

        threads = self.spec.execution.launcher.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        distributed.init_from_environment()
        quiet = not distributed.is_main()
        runner = Runner(self.spec.with_execution(quiet=True),
                        log=(lambda _: None) if quiet else (lambda m: print(m, flush=True)))
        results = runner.run(self.steps)
        world_size = distributed.world_size()
        distributed.shutdown()
        return {"run_dir": str(runner.run_dir.path), "steps": [r.step for r in results],
                "trained": [r.step for r in results if r.trained], "world_size": world_size}
