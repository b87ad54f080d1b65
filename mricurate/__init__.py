"""The ``mricurate`` command line (see :mod:`mricurate.cli`)."""
