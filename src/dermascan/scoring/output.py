"""The output Parquet file, written so that a crash loses at most one part and a re-run resumes.

Results stream into parts beside the output, ``OUT.parquet.parts/part-000000.parquet`` ..., each written
atomically (temporary name, then rename) once it holds ``rows_per_part`` rows. When the run ends, the old
output (if any) and every part are merged, batch by batch, into ``OUT.parquet`` (atomically again) and the
parts are removed. A run that crashed or was pre-empted leaves its finished parts behind; the next run with
the same output reads the paths in ``OUT.parquet`` and in the parts and scores only the rest. Rows with an
error count as done (a corrupt file fails the same way twice); delete the output to score everything again.

Parquet cannot be appended to in place (its footer indexes the whole file), hence the parts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dermascan import _io
from dermascan.scoring.sources import ScoringError


class ResultWriter:
    """Parts, resume and the final merge of one output file.

    Args:
        output: the ``.parquet`` file to produce.
        schema: its schema (:func:`~dermascan.scoring.batch.output_schema`).
        bundle_digest: the bundle that scores this run; rows already present must come from the same one.
        rows_per_part: rows per part file (what a crash can lose).
    """

    def __init__(
        self, output: str | os.PathLike[str], schema: pa.Schema, bundle_digest: str, rows_per_part: int = 4096
    ) -> None:
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
        self.output = Path(output)
        self.parts_dir = self.output.with_name(self.output.name + ".parts")
        self.schema = schema
        self.digest = bundle_digest
        self.rows_per_part = rows_per_part
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in self._parts()), default=-1)

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def _existing(self) -> list[Path]:
        return ([self.output] if self.output.exists() else []) + self._parts()

    def done_paths(self) -> set[str]:
        """Paths already in the output or its parts (the images a re-run skips).

        Raises:
            ScoringError: the output is not a score file, or was scored with another bundle.
        """
        done: set[str] = set()
        for f in self._existing():
            try:
                table = pq.read_table(f, columns=["path", "bundle_digest"])
            except (pa.ArrowException, OSError, KeyError) as e:
                raise ScoringError(
                    f"{f} exists but is not a DermaScan score file ({e}); choose another --output or delete it"
                ) from e
            digests = set(table.column("bundle_digest").to_pylist())
            if digests - {self.digest}:
                other = sorted(digests - {self.digest})[0]
                raise ScoringError(
                    f"{f} holds rows scored by another bundle (digest {other[:12]}...), this one is "
                    f"{self.digest[:12]}...; write a new model's scores to a new --output (or delete the old one)"
                )
            done.update(table.column("path").to_pylist())
        return done

    def write(self, table: pa.Table) -> None:
        """Add rows; a part is written whenever ``rows_per_part`` rows are waiting."""
        self._pending.append(table.cast(self.schema))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        """Write the waiting rows as one part (atomically)."""
        if not self._pending_rows:
            return
        part = self.parts_dir / f"part-{self._next_part:06d}.parquet"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with _io.atomic_path(part) as tmp:
            pq.write_table(pa.concat_tables(self._pending), tmp)
        self._next_part += 1
        self._pending, self._pending_rows = [], 0

    def close(self) -> int:
        """Flush, merge the old output and every part into the output file, remove the parts.

        Returns:
            Rows in the output file.
        """
        self.flush()
        parts = self._parts()
        if not parts:  # nothing new: the output (if any) stays as it is
            return pq.ParquetFile(self.output).metadata.num_rows if self.output.exists() else 0
        rows = 0
        with _io.atomic_path(self.output) as tmp, pq.ParquetWriter(tmp, self.schema) as writer:
            for f in self._existing():
                for batch in pq.ParquetFile(f).iter_batches():  # streamed: memory stays flat on any archive
                    writer.write_table(pa.Table.from_batches([batch]).cast(self.schema))
                    rows += batch.num_rows
        shutil.rmtree(self.parts_dir)
        return rows


__all__ = ["ResultWriter"]
