"""The DICOM network: receive from scanners and PACS, push a release to a research PACS.

- :mod:`pipeline.net.listener`: the Storage SCP of ``mricurate listen`` (C-ECHO and
  C-STORE of every storage SOP class in every transfer syntax; calling AE and host
  allowlists);
- :mod:`pipeline.net.receive`: one received instance made durable in ``incoming/``
  under its content hash, once per SOP Instance UID, recorded in the catalog;
- :mod:`pipeline.net.echo`: C-ECHO of a configured node (``mricurate echo NODE``);
- :mod:`pipeline.net.push`: C-STORE of a release's DICOM files (``mricurate push``).

Pulling a cohort (C-FIND, C-MOVE, C-GET) is a later slice.  Nothing here logs
or raises a header value: instances are named by their content hash.
"""
