"""Raw k-space: vendor raw data into anonymized ISMRMRD/HDF5, and fastMRI files."""
