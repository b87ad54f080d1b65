"""Who a value belongs to and what it becomes: shared by the DICOM and the raw side.

Names and IDs normalised (:mod:`.names`), dates shifted (:mod:`.dates`), free
text cleaned of a file's own PHI (:mod:`.clean`), UIDs remapped by the key
(:mod:`.uids`), the subject's pseudonym and shift (:mod:`.subjects`), and the
link record of what an input's identifiers became (:mod:`.links`).  Nothing
here reads a file or knows a format.
"""
