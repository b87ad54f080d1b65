"""The one batch runner: pool, stall watchdog, memory ceiling, locks, commit journal.

``deid``, ``convert`` and ``scan`` are :func:`~pipeline.batch.runner.run_batch`
with different steps (:mod:`pipeline.steps`); the step shape is
:mod:`pipeline.batch.step`.
"""
