"""Prefect flows: thin wiring around :mod:`pipeline`.

- :mod:`flows.ingest`: the ingest flow, eight tasks over :mod:`pipeline.ingest`;
- :mod:`flows.environment`: every ``PREFECT_*`` setting, fixed before Prefect is imported;
- :mod:`flows.server`: a local Prefect server, and what a killed run left behind;
- :mod:`flows.recovery`: killed runs marked Crashed;
- :mod:`flows.serve`: the scheduled deployment, one run at a time.

Import :mod:`flows.environment` and call ``configure`` before anything else here:
the other modules import Prefect.
"""
