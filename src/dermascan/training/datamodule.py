"""Data for training: read the folder, split by lesion, build the loaders (Lightning DataModule)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from dermascan.config import Preprocessing
from dermascan.data.datasets import DermoscopyDataset, cache_images
from dermascan.data.readers import DermoscopyIndex
from dermascan.data.sampling import BalancedSampler, SeededSampler, ShardedShuffleSampler, class_counts
from dermascan.data.splits import combine_official, make_splits, read_splits, write_splits
from dermascan.data.transforms import Augmentation, eval_transform, train_transform
from dermascan.runs import SPLITS_FILE
from dermascan.training.config import TrainConfig, read_run_data

log = logging.getLogger(__name__)


class DermoscopyDataModule(L.LightningDataModule):
    """Reads the dataset once, writes or reuses ``splits.csv`` in the run folder, and serves loaders.

    The splits file is written before training starts, so a resumed run (or the evaluation of this run)
    uses exactly the same lesions for validation and test.
    """

    def __init__(self, config: TrainConfig, preprocessing: Preprocessing, index: DermoscopyIndex | None = None):
        super().__init__()
        self.config = config
        self.preprocessing = preprocessing
        self.index = index
        self.splits: pd.DataFrame | None = None
        #: the data's record (fingerprint, size, classes) taken from the original files, before any caching
        self.data_record: dict[str, Any] | None = None

    def prepare(self) -> None:
        """Read, split and (optionally) cache. Runs in the launching process before any DDP worker starts."""
        cfg = self.config
        if self.index is None:
            self.index = read_run_data(cfg, skip_bad=cfg.skip_bad, progress=True)
        split_path = Path(cfg.out) / SPLITS_FILE
        if split_path.exists():
            self.splits = read_splits(split_path, self.index.frame)
        elif cfg.val_data or cfg.test_data:
            # The official validation/test folders are kept whole; only what is missing is carved from data.
            frame = self.index.frame
            parts = {
                k: frame[frame["path"].map(lambda p, r=Path(getattr(cfg, k)).resolve(): r in Path(p).resolve().parents)]
                for k in ("val_data", "test_data")
                if getattr(cfg, k)
            }
            held = pd.concat(list(parts.values()))
            self.splits = combine_official(
                frame[~frame["image_id"].isin(held["image_id"])],
                parts.get("val_data"),
                parts.get("test_data"),
                cfg.val_fraction,
                cfg.test_fraction,
                cfg.seed,
            )
            write_splits(self.splits, split_path)
        else:
            self.splits = make_splits(self.index.frame, cfg.val_fraction, cfg.test_fraction, cfg.seed)
            write_splits(self.splits, split_path)
        self.data_record = {
            **self.index.record(),
            "splits": {k: int(v) for k, v in self.splits["split"].value_counts().sort_index().items()},
        }
        if cfg.cache_dir:
            frame = cache_images(
                self.index.frame, cfg.cache_dir, self.preprocessing.resize_size, True, self.preprocessing.jpeg_draft
            )
            self.index = DermoscopyIndex(self.index.root, self.index.layout, frame, self.index.skipped)

    def frame(self, split: str) -> pd.DataFrame:
        assert self.index is not None and self.splits is not None, "call prepare() first"
        ids = self.splits.loc[self.splits["split"] == split, "image_id"]
        return self.index.frame.set_index("image_id").loc[ids].reset_index()

    def train_counts(self) -> np.ndarray:
        return class_counts(self.frame("train")["label"])

    @property
    def num_workers(self) -> int:
        if self.config.num_workers >= 0:
            return self.config.num_workers
        # Small images decode in well under a millisecond: worker processes would cost more than they save.
        return 0 if self.preprocessing.resize_size <= 128 else min(4, os.cpu_count() or 1)

    def _loader(self, dataset: DermoscopyDataset, sampler=None, shuffle: bool = False) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        frame = self.frame("train")
        aug = Augmentation(**self.config.augment)
        dataset = DermoscopyDataset(frame, train_transform(self.preprocessing, aug), self.preprocessing.jpeg_draft)
        trainer = self.trainer
        rank, world, epoch = (trainer.global_rank, trainer.world_size, trainer.current_epoch) if trainer else (0, 1, 0)
        seed = self.config.seed
        # Each rank draws its own shard. The epoch is set now, not only by Lightning's set_epoch, because a
        # resumed run fetches its first batch before that call.
        if self.config.sampler == "balanced":
            base = BalancedSampler(frame["label"].to_numpy(), seed=seed, rank=rank, world_size=world, epoch=epoch)
        else:
            base = ShardedShuffleSampler(len(frame), seed=seed, rank=rank, world_size=world, epoch=epoch)
        return self._loader(dataset, sampler=SeededSampler(base, seed))

    def val_dataloader(self) -> DataLoader:
        # Every rank sees the whole validation split: metrics such as AUROC need all of it, unpadded.
        return self._loader(
            DermoscopyDataset(self.frame("val"), eval_transform(self.preprocessing), self.preprocessing.jpeg_draft)
        )
