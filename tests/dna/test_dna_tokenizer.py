"""The nucleotide tokenizer: vocabulary, IUPAC handling, reverse-complement symmetry, errors."""

from __future__ import annotations

import re

import pytest
import torch

from datamodules.dna.tokenizer import (
    CLS,
    PAD,
    InvalidNucleotideError,
    NucleotideTokenizer,
    reverse_complement,
    reverse_complement_tokens,
)

TOKENIZER = NucleotideTokenizer()

ENCODE_CASES = [
    pytest.param("ACGT", [2, 3, 4, 5], id="upper"),
    pytest.param("acgtn", [2, 3, 4, 5, 6], id="lower-is-upper"),
    pytest.param("RYSWKMBDHVN", [6] * 11, id="iupac-ambiguity-to-N"),
    pytest.param("ryswkmbdhvn", [6] * 11, id="iupac-lower"),
    pytest.param("GaTtAcA", [4, 2, 5, 5, 2, 3, 2], id="mixed-case"),
]


@pytest.mark.parametrize("text, ids", ENCODE_CASES)
def test_encode(text, ids):
    assert TOKENIZER.encode(text).tolist() == ids


def test_vocabulary_and_specials():
    assert TOKENIZER.vocab_size == 7
    assert (TOKENIZER.pad_id, TOKENIZER.cls_id) == (PAD, CLS) == (0, 1)
    assert TOKENIZER.decode(torch.tensor([0, 1, 2, 3, 4, 5, 6])) == "<pad><cls>ACGTN"


RC_CASES = [
    pytest.param("ACGT", id="palindrome"),
    pytest.param("AAAACCCGGT", id="plain"),
    pytest.param("acgTTgca", id="lower"),
    pytest.param("ARYSWKMBDHVNT", id="iupac"),
    pytest.param("GATTACAGATTACAN", id="odd-length"),
    pytest.param("G", id="one-base"),
]


@pytest.mark.parametrize("text", RC_CASES)
def test_reverse_complement_commutes_with_tokenizing(text):
    """tokens(revcomp(s)) == revcomp(tokens(s)), and revcomp is an involution on both sides."""
    tokens = TOKENIZER.encode(text)
    assert torch.equal(TOKENIZER.encode(reverse_complement(text)), reverse_complement_tokens(tokens))
    assert reverse_complement(reverse_complement(text)) == text
    assert torch.equal(reverse_complement_tokens(reverse_complement_tokens(tokens)), tokens)


def test_reverse_complement_known_values():
    assert reverse_complement("AACGTTR") == "YAACGTT"
    assert TOKENIZER.decode(reverse_complement_tokens(TOKENIZER.encode("GATTACA"))) == "TGTAATC"


def test_reverse_complement_keeps_specials_and_batches():
    tokens = torch.tensor([[2, 3, 1], [4, 4, 1]])  # A C CLS, G G CLS
    assert reverse_complement_tokens(tokens).tolist() == [[1, 4, 5], [1, 3, 3]]


INVALID_CASES = [
    pytest.param("ACGU", "'U'", 4, id="rna-U"),
    pytest.param("AC-GT", "'-'", 3, id="gap"),
    pytest.param("ACGT1", "'1'", 5, id="digit"),
    pytest.param("AC GT", "' '", 3, id="space"),
    pytest.param("ACéGT", "(non-ASCII)", 3, id="non-ascii"),
    pytest.param("MKVLE*", "'L'", 4, id="protein"),  # M, K, V are IUPAC codes; L is not
]


@pytest.mark.parametrize("text, char, position", INVALID_CASES)
def test_invalid_character_names_record_and_position(text, char, position):
    with pytest.raises(InvalidNucleotideError, match=rf"chr7: character {re.escape(char)} at position {position} "):
        TOKENIZER.encode(text, record="chr7")
