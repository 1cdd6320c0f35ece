"""Nucleotide tokenizer: one token per base, case-insensitive, with PAD and CLS specials.

Vocabulary (``NucleotideTokenizer.vocab_size`` = 7)::

    id    0    1    2  3  4  5  6
    token PAD  CLS  A  C  G  T  N

IUPAC ambiguity codes (R Y S W K M B D H V, and N itself) all become N: the model sees "some
base, not known which". Lower case (soft-masked repeats in genome assemblies) reads as upper
case. Any other character (digits, gaps ``-`` / ``.``, ``U``, ``*``) is an error naming the record
and the 1-based position, so a protein or RNA file never trains silently as DNA.

The complement table on ids (A<->T, C<->G, N, PAD, CLS fixed) makes the reverse complement an
operation on tokens: ``encode(reverse_complement(s)) == reverse_complement_tokens(encode(s))``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

PAD, CLS, A, C, G, T, N = range(7)
TOKENS = ("<pad>", "<cls>", "A", "C", "G", "T", "N")
#: ambiguity codes read as N (IUPAC: R=A/G, Y=C/T, S=G/C, W=A/T, K=G/T, M=A/C, B=not A,
#: D=not C, H=not G, V=not T, N=any)
AMBIGUITY_CODES = "RYSWKMBDHVN"
#: IUPAC complements, used for reverse complements of text (both cases)
_COMPLEMENT_TEXT = str.maketrans("ACGTRYSWKMBDHVNacgtryswkmbdhvn", "TGCAYRSWMKVHDBNtgcayrswmkvhdbn")
_INVALID = 255


def _byte_table() -> bytes:
    """256-byte translation table: an ASCII character -> its token id, anything else -> 255."""
    table = bytearray([_INVALID] * 256)
    for char, token in (("A", A), ("C", C), ("G", G), ("T", T), *((c, N) for c in AMBIGUITY_CODES)):
        table[ord(char)] = token
        table[ord(char.lower())] = token
    return bytes(table)


_TABLE = _byte_table()
#: complement of every token id (specials map to themselves)
COMPLEMENT = torch.tensor([PAD, CLS, T, G, C, A, N], dtype=torch.long)


class InvalidNucleotideError(ValueError):
    """A character outside the IUPAC nucleotide alphabet."""


class NucleotideTokenizer:
    """Turns nucleotide text into token ids and back (see the module docstring for the vocabulary)."""

    vocab_size = len(TOKENS)
    pad_id = PAD
    cls_id = CLS

    def encode_bytes(self, text: bytes, record: str = "sequence", offset: int = 0,
                     where: Optional[str] = None) -> bytes:
        """Token ids of ``text`` as bytes (one byte per base; the fast path of FASTA reading).

        Args:
            text: ASCII nucleotides.
            record: the name used in an error (a FASTA header, a CSV row).
            offset: bases of the record before ``text``, so the error position is within the record.
            where: extra context for an error (``"file.fa line 12"``).
        Raises:
            InvalidNucleotideError: naming the record, the 1-based position and the character.
        """
        ids = text.translate(_TABLE)
        bad = ids.find(_INVALID)
        if bad >= 0:
            char = repr(chr(text[bad])) if text[bad] < 128 else "(non-ASCII)"
            context = f" ({where})" if where else ""
            raise InvalidNucleotideError(
                f"{record}{context}: character {char} at position {offset + bad + 1} is not an IUPAC "
                f"nucleotide code; expected one of ACGT, N or {AMBIGUITY_CODES[:-1]} (any case)")
        return ids

    def encode_text(self, sequence: str, record: str = "sequence") -> bytes:
        """Token ids of ``sequence`` as bytes (no specials added); errors as ``encode_bytes``."""
        # A non-ASCII character becomes one 0xff byte, so the error names its true position.
        raw = sequence.encode("ascii") if sequence.isascii() else bytes(
            ord(c) if ord(c) < 128 else _INVALID for c in sequence)
        return self.encode_bytes(raw, record)

    def encode(self, sequence: str, record: str = "sequence") -> Tensor:
        """(L,) int64 token ids of ``sequence`` (no specials added)."""
        return as_tensor(self.encode_text(sequence, record)).long()

    def decode(self, tokens: Tensor) -> str:
        """Text of a 1-D tensor of ids; specials are written ``<pad>`` / ``<cls>``."""
        return "".join(TOKENS[int(t)] for t in tokens)


def as_tensor(ids: bytes) -> Tensor:
    """(L,) uint8 tensor of token-id bytes (one byte per base: a genome stays compact)."""
    return torch.frombuffer(bytearray(ids), dtype=torch.uint8) if ids else torch.empty(0, dtype=torch.uint8)


def reverse_complement(sequence: str) -> str:
    """Reverse complement of nucleotide text with IUPAC complements (R<->Y, K<->M, B<->V, D<->H)."""
    return sequence.translate(_COMPLEMENT_TEXT)[::-1]


def reverse_complement_tokens(tokens: Tensor) -> Tensor:
    """(..., L) ids -> the reverse complement along the last dim (for unpadded sequences)."""
    return COMPLEMENT.to(tokens.device)[tokens.long()].flip(-1).to(tokens.dtype)
