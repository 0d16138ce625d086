"""DermaScan: AI-assisted dermoscopy screening over the 7 ISIC 2018 classes."""

import os

# numpy's OpenBLAS on one thread, set before numpy loads (the only setting that holds: changing it later with
# threadpoolctl does not stop the effect below). Its pool threads, once woken by a product in a thread other
# than the main one (the service's inference thread renders the heat map there), kept taking the cores from
# the next model call: measured on 2 cores, ResNet-50 on OpenVINO 43 -> 90 ms per image after the heat map's
# 768 x 1024 product, 43 ms with this. DermaScan's own numpy products are small; the models have their own
# threads. Set OPENBLAS_NUM_THREADS yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from dermascan.taxonomy import CLASSES, MELANOMA_INDEX, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["CLASSES", "MELANOMA_INDEX", "NUM_CLASSES", "__version__"]
