"""The pixel scan: find burned-in text in pixel data, overlays and icons.

Header rules cannot clean what a scanner or a screen grabber drew into the
pixels.  This package decodes every image a file carries (:mod:`.frames`),
makes each one readable for OCR (:mod:`.prepare`), skips the ones that
plainly hold no text (:mod:`.prefilter`), reads the rest with an OCR engine
(:mod:`.ocr`), matches what it read to the file's own header PHI
(:mod:`.phi`) and reports one finding per file (:mod:`.scan`).

Nothing here changes pixels yet: cleaning is a later step that reads the
findings.
"""
