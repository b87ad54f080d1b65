"""What one ingest run does, step by step, as plain functions the Prefect flow calls.

Each stage selects its inputs from the catalog by state, not from what an
earlier stage of the same run handed over: a run killed between two stages
is finished by the next one (``NEW`` inputs are processed, ``PROCESSED``
ones verified and routed, ``VERIFIED`` ones published).
"""
