"""Reading inputs, shared by every step: finding them, hashing them, parsing DICOM.

The floor under :mod:`pipeline.dicom`, :mod:`pipeline.pixels` and
:mod:`pipeline.raw`: what both the de-identifier and the pixel scan need to
read a file lives here, so neither imports the other.
"""
