"""Names of the dataset format on disk, defined once for the readers, the generator and the audits.

The ISIC 2018 Task 3 layout (also what ``dermascan synth`` writes)::

    DIR/images/<image_id>.jpg
    DIR/ISIC2018_Task3_GroundTruth.csv   # image,MEL,NV,BCC,AKIEC,BKL,DF,VASC (one-hot)
    DIR/metadata.csv                     # image_id,lesion_id,dx,age,sex,localization[,fitzpatrick,...]
"""

from __future__ import annotations

from dermascan.errors import DermaScanError

#: The one-hot label file of ISIC 2018 Task 3.
GROUND_TRUTH_NAME = "ISIC2018_Task3_GroundTruth.csv"
#: DermaScan's own metadata file (the synthetic generator writes it).
METADATA_NAME = "metadata.csv"
#: HAM10000's metadata file (``lesion_id,image_id,dx,dx_type,age,sex,localization``).
HAM10000_METADATA_NAME = "HAM10000_metadata.csv"
#: Metadata columns (0/1) that flag a nuisance in the capture, in the generator's drawing order.
NUISANCE_FLAGS: tuple[str, ...] = ("hair", "ruler", "ink", "bubbles", "vignette", "blur")


class DatasetError(DermaScanError, ValueError):
    """A dataset folder that cannot be read as it is; the message names the file, row and fix.

    Raised by the readers (:mod:`dermascan.data.readers`, which re-exports it) and the splits.
    """
