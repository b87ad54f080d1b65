"""One module per kind of input, composing the layers below into a runnable step.

Each step takes one input and returns one :class:`~pipeline.batch.step.StepResult`;
:mod:`pipeline.batch` runs it over many inputs.  ``dicom_file`` (``deid``),
``raw_file`` (``convert``), ``scan_file`` (``scan``).
"""
