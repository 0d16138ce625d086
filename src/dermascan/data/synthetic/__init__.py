"""Synthetic dermoscopy: the embedded default dataset, written in the ISIC 2018 Task 3 layout.

No real dermoscopy can be downloaded on our machines, so every command and every figure (melanoma
sensitivity, fairness gaps, drift, heat-map quality) runs on images made here. They are built to
behave like dermoscopy, not like coloured circles:

* Skin by Fitzpatrick type I-VI (pinkish beige to dark brown) with mottling, furrows and grain.
  Lesion contrast falls with skin type (V-VI keep 58-68 % of it), so a model trained on this
  set, which is skewed to types I-III like public collections, loses melanoma sensitivity on V-VI.
* Lesions built from the dermoscopic features that tell the classes apart, with overlapping
  distributions: asymmetry, border irregularity, colour count, diameter, pigment network,
  dots/globules, streaks, blue-white veil and regression for melanocytic lesions; arborizing
  vessels, blue-grey ovoid nests and ulceration for BCC; strawberry background, scale and dotted
  vessels for AKIEC; waxy brown, milia-like cysts, comedo-like openings and fissures for BKL; a
  central white patch in a delicate brown ring for DF; red-purple lacunae for VASC.
* Nevi and melanomas share one continuous latent, ``malignancy``, that drives the melanoma
  features. Nevi sit low and melanomas high, but ``atypical_nevus_rate`` of nevi are drawn most of
  the way toward melanoma and ``featureless_melanoma_rate`` of melanomas only part of the way from
  nevus, and ``feature_overlap`` adds per-feature noise, so the task is not trivially separable.
* Nuisances a model must ignore: hair, ruler ticks, marker ink, gel bubbles, dark vignette
  corners, blur, and exposure / colour cast of three dermoscope profiles; then JPEG compression.

Ground truth stays honest: the class decides the lesion, never a nuisance alone. Like real
collections, a few nuisances correlate with the class, so shortcut audits have something to find
(all scaled by ``nuisance_rate``):

* ink marks: 25 % of images of lesions referred for biopsy (MEL, BCC, AKIEC) against 5 % of benign ones;
* ruler: 20 % of melanoma images against 10 % of the others (suspicious lesions get measured);
* hair: more on men and on the scalp and limbs (sex and site correlate with class, as in HAM10000);
* age, sex and body site follow per-class distributions shaped like HAM10000's;
* diameter: melanomas are larger on average (median 8.5 mm against 6.0 mm for nevi), with wide overlap.

Fitzpatrick type and dermoscope profile are drawn independently of the class.

Determinism: image ``i`` depends only on ``(seed, i)`` (and the config knobs); the images of one
lesion share everything drawn from ``(seed, lesion number)``: class, patient metadata, lesion shape
and structures. Which lesion an image belongs to depends on ``seed`` and ``multi_image_lesion_rate``
only, never on ``n``. The same config writes byte-identical files whatever the number of workers.

See ``docs/synthetic.md`` for every knob, feature and nuisance.

The package, one job per module, in the order an image is made:
``config`` (:class:`SynthConfig`, dermoscope profiles), ``layout`` (ids, image -> lesion),
``plan`` (per-lesion and per-capture draws, the metadata row), ``canvas`` (the lesion frame and its
pigments), ``structures`` and ``lesions`` (painting each class), ``skin``, ``nuisances``, ``render``
(one image) and ``writer`` (a dataset on disk); ``draw`` holds the raster primitives.
"""

from __future__ import annotations

from dermascan.data.schema import GROUND_TRUTH_NAME as GROUND_TRUTH_FILE
from dermascan.data.schema import METADATA_NAME as METADATA_FILE
from dermascan.data.schema import NUISANCE_FLAGS as NUISANCES
from dermascan.data.synthetic.config import (
    DEFAULT_FITZPATRICK_MIX,
    DERMOSCOPES,
    HAM10000_PRIORS,
    DermoscopeProfile,
    SynthConfig,
)
from dermascan.data.synthetic.layout import image_id, lesion_id
from dermascan.data.synthetic.plan import METADATA_COLUMNS, describe_image, image_metadata, metadata_table
from dermascan.data.synthetic.render import render_image
from dermascan.data.synthetic.writer import generate_dataset

__all__ = [
    "DEFAULT_FITZPATRICK_MIX",
    "DERMOSCOPES",
    "GROUND_TRUTH_FILE",
    "HAM10000_PRIORS",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "NUISANCES",
    "DermoscopeProfile",
    "SynthConfig",
    "describe_image",
    "generate_dataset",
    "image_id",
    "image_metadata",
    "lesion_id",
    "metadata_table",
    "render_image",
]
