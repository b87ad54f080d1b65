"""DICOM de-identification driven by the rule files in ``rules/dicom``."""
