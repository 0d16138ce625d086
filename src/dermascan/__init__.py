"""DermaScan: AI-assisted dermoscopy screening over the 7 ISIC 2018 classes."""

from dermascan.taxonomy import CLASSES, MELANOMA_INDEX, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["CLASSES", "MELANOMA_INDEX", "NUM_CLASSES", "__version__"]
