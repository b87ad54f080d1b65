"""Prefect flows: thin wiring around :mod:`pipeline` (scheduled ingest, review queue).

Nothing here yet: the DICOM and raw steps are called directly by the CLI until the
ingest issue adds the flows.
"""
