"""Sequences to predict (``titans predict --data.predict_path``): a FASTA file, plain or gzipped,
or a CSV with a sequence column, each sequence with a name (the ``id`` of ``predictions.csv``).

Shape legend: L sequence length.

Names: a FASTA record's name (the first word of its header); a CSV's ``id_column``, or without
one the row number (1 = the first row under the header). The DataModules keep them as
``predict_ids``; a prediction batch carries ``index`` (B,), the position of each sequence in the
file, so that a writer finds its name as ``predict_ids[index]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import Tensor
from torch.utils.data import Dataset

from .fasta import looks_like_fasta, read_fasta
from .labels import encode_rows, read_csv_columns
from .tokenizer import NucleotideTokenizer, reverse_complement_tokens


@dataclass
class NamedSequences:
    """Sequences to predict: a name and (L_i,) uint8 token ids each, in file order."""

    ids: list[str]
    sequences: list[Tensor]


def read_predict_source(path: str | Path, sequence_column: str = "sequence", id_column: Optional[str] = None,
                        tokenizer: Optional[NucleotideTokenizer] = None) -> NamedSequences:
    """The named sequences of a FASTA file (told by content: its first line starts with ``>``)
    or of a CSV file (``sequence_column``, optional ``id_column``; other columns ignored).

    Raises FileNotFoundError, and the errors of ``read_fasta`` / ``read_csv_columns`` (a bad
    character, an empty sequence, a missing column: naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file (predict_path) not found: {path}")
    if looks_like_fasta(path):
        records = read_fasta(path, tokenizer)
        return NamedSequences([r.name for r in records], [r.tokens for r in records])
    columns = {"sequence_column": sequence_column, **({"id_column": id_column} if id_column else {})}
    frame = read_csv_columns(path, columns)
    sequences = encode_rows(path, frame, sequence_column, {id_column: "an id"} if id_column else {}, tokenizer)
    ids = frame[id_column].to_list() if id_column else [str(row) for row in range(1, frame.height + 1)]
    return NamedSequences(ids, sequences)


class PredictDataset(Dataset):
    """Items ``{"tokens": (L,) int64, "index": int}``, and ``"rc_tokens"`` (the reverse
    complement) with ``with_rc``; batched by ``collate_sequences``."""

    def __init__(self, sequences: list[Tensor], with_rc: bool = False) -> None:
        self.sequences, self.with_rc = sequences, with_rc

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        item = {"tokens": self.sequences[i].long(), "index": i}
        if self.with_rc:
            item["rc_tokens"] = reverse_complement_tokens(item["tokens"])
        return item
