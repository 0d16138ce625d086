"""The diagnostic taxonomy: the one place that defines class codes, their order and the melanoma index.

The order is the column order of the ISIC 2018 Task 3 ground truth and submission files. Every tensor of
class scores in this code base uses it, so index 0 is always melanoma.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
NUM_CLASSES = len(CLASSES)
MELANOMA = "MEL"
MELANOMA_INDEX = CLASSES.index(MELANOMA)

#: Human-readable names, as a clinician reads them.
DISPLAY_NAMES: dict[str, str] = {
    "MEL": "Melanoma",
    "NV": "Melanocytic nevus",
    "BCC": "Basal cell carcinoma",
    "AKIEC": "Actinic keratosis / intraepithelial carcinoma",
    "BKL": "Benign keratosis",
    "DF": "Dermatofibroma",
    "VASC": "Vascular lesion",
}

#: snake_case names used in the HTTP API (brief section 4.2: "primary": "melanocytic_nevus").
API_NAMES: dict[str, str] = {
    "MEL": "melanoma",
    "NV": "melanocytic_nevus",
    "BCC": "basal_cell_carcinoma",
    "AKIEC": "actinic_keratosis",
    "BKL": "benign_keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular_lesion",
}

#: Feedback outcomes (store code -> API name): the seven classes, a lesion outside the taxonomy, and "not
#: biopsied" (a histopathology answer: the lesion no longer awaits a result). Codes fit the store's 8 characters.
OUTCOME_NAMES: dict[str, str] = {**API_NAMES, "OTHER": "other", "NOBIOPSY": "not_biopsied"}
OUTCOME_DISPLAY: dict[str, str] = {**DISPLAY_NAMES, "OTHER": "Other", "NOBIOPSY": "Not biopsied"}

#: Which classes are malignant or pre-malignant (drives the recommendation, not the classifier).
MALIGNANT: frozenset[str] = frozenset({"MEL", "BCC", "AKIEC"})

# Spellings seen in HAM10000 (`dx`), ImageFolder trees and papers, all mapped to a code.
_ALIASES: dict[str, str] = {
    "mel": "MEL", "melanoma": "MEL",
    "nv": "NV", "nevus": "NV", "naevus": "NV", "nevi": "NV", "melanocytic_nevus": "NV",
    "melanocytic_nevi": "NV", "melanocytic nevus": "NV", "melanocytic nevi": "NV",
    "bcc": "BCC", "basal_cell_carcinoma": "BCC", "basal cell carcinoma": "BCC",
    "akiec": "AKIEC", "ak": "AKIEC", "actinic_keratosis": "AKIEC", "actinic keratosis": "AKIEC",
    "actinic_keratoses": "AKIEC", "actinic keratoses": "AKIEC",
    "bkl": "BKL", "benign_keratosis": "BKL", "benign keratosis": "BKL",
    "benign_keratosis_like_lesions": "BKL", "benign keratosis-like lesions": "BKL",
    "df": "DF", "dermatofibroma": "DF",
    "vasc": "VASC", "vascular": "VASC", "vascular_lesion": "VASC", "vascular lesion": "VASC",
    "vascular_lesions": "VASC", "vascular lesions": "VASC",
}  # fmt: skip


def class_code(name: str) -> str:
    """Map any known spelling of a class (``mel``, ``Melanoma``, ``NV``, ``nevus``) to its code.

    Raises:
        ValueError: the name is not a known class, with the list of accepted codes.
    """
    key = name.strip().lower().replace("-", "_")
    if key.upper() in CLASSES:
        return key.upper()
    if key in _ALIASES:
        return _ALIASES[key]
    if key.replace("_", " ") in _ALIASES:
        return _ALIASES[key.replace("_", " ")]
    raise ValueError(
        f"unknown class {name!r}: expected one of {', '.join(CLASSES)} "
        f"(or a common spelling such as 'mel', 'melanoma', 'nevus')"
    )


def class_index(name: str) -> int:
    """Index of a class (any accepted spelling) in :data:`CLASSES`."""
    return CLASSES.index(class_code(name))
