"""Ordinary words: a name part that is one of them is not looked for on its own.

A patient may be called Head, Knee or Brain, and every head MR says HEAD.
Such a name part is still found inside the full name (``Head John``,
``HEAD^JOHN``) and as the whole value of a person-name field, never alone.

The words come from two places, neither of them the de-identification
rules: the attribute names of pydicom's data dictionary and of its UID
dictionary (the standard's technical English: *field*, *echo*, *view*), and
the short list below of what MR outputs and release files say that the
standard's attribute names do not (body parts, sequence names, vendors and
models, manifest columns).  The check keeps its own list on purpose: a word
the cleaner wrongly keeps must not become a word the check wrongly ignores.
Common surnames that are also English words (Brown, Smith, Young) are left
out: missing one such word costs a false alarm, knowing it could cost a leak.
"""

from __future__ import annotations

import re
from functools import cache

from pydicom._dicom_dict import DicomDictionary
from pydicom._uid_dict import UID_dictionary

__all__ = ["is_ordinary", "ordinary_words"]

_WORD = re.compile(r"[^\W\d_]{3,}")

# What MR outputs and release files say beyond the standard's attribute names,
# one word or more per line (kept as text: a word list reads best as prose).
_MR_AND_RELEASE_WORDS = """
    abdomen ankle aorta arm artery axial axilla back bladder bone bowel brain brainstem breast
    calf cardiac carotid cervical chest coronal cord elbow face femur finger foot forearm hand
    head heart heel hip humerus jaw joint kidney knee knees leg liver lumbar lung neck orbit
    pelvis prostate sacrum shoulder skull spine spleen thigh thorax thoracic toe wrist left
    right both bilateral sag sagittal cor tra tse gre epi flair stir dwi adc swi tof mprage
    space vibe dixon haste blade propeller fiesta fse frfse spgr bravo cube localizer
    localiser scout survey calibration noise prescan diffusion perfusion contrast post pre fat
    sat water phase magnitude mag real imaginary map maps trace tensor echo spin gradient turbo
    fast flash fisp true mpr mip sub subtraction recon reconstruction derived original primary
    secondary other none mosaic normal moco fbk corpd pdfs pdw tirm cine bold asl dti
    siemens philips toshiba canon hitachi fonar esaote bruker agfa kodak fuji fujifilm
    carestream hologic samsung mindray varian elekta neusoft uih united imaging healthcare
    medical systems magnetom skyra prisma avanto verio aera trio espree vida sola symphony
    sonata achieva ingenia intera panorama elition signa discovery optima genesis excite hdxt
    vantage titan orian galan echelon oasis aquilion rhapsode lightspeed revolution somatom
    biograph brilliance ingenuity numaris syngo
    radiology radiologie radiologia neuroradiology department hospital hopital klinik klinikum
    clinica centre centro institute institut
    subject subjects study studies series measurement measurements meas image images slice
    slices file files dataset data release version manifest manifests split train training
    validation test testing modality field strength acquisition label matrix coil coils path
    size sha rule set ruleset raw dicom ismrmrd fastmri kspace rss max norm reconstruction
    schema license readme changelog added changed withdrawn count counts mricurate generated
    type string integer number title description name format
"""


@cache
def ordinary_words() -> frozenset[str]:
    """Every ordinary word, folded to lower case, three letters or more."""
    words: set[str] = set()
    for entry in DicomDictionary.values():
        words.update(w.lower() for w in _WORD.findall(entry[2]))
    for uid_entry in UID_dictionary.values():
        words.update(w.lower() for w in _WORD.findall(uid_entry[0]))
    words.update(_MR_AND_RELEASE_WORDS.split())
    return frozenset(words)


def is_ordinary(word: str) -> bool:
    """``word`` (folded) is an ordinary word of MR outputs, not only a name."""
    return word in ordinary_words()
