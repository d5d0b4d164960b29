"""Streamed text is masked piece by piece, also when a secret is split across pieces."""

from __future__ import annotations

import pytest

from stigmer_backend.runner.masking import MASK, Masker
from tests.secrets.test_masking import TOKEN, encodings

TEXT_AROUND = "before {} between {} after"


def stream(masker: Masker, pieces: list[str]) -> list[str]:
    """What a screen would show, piece by piece: ``mask_settled`` on each arrival, ``mask`` at the end."""
    shown, held = [], ""
    for piece in pieces:
        settled, held = masker.mask_settled(held + piece)
        shown.append(settled)
    shown.append(masker.mask(held))
    return shown


@pytest.mark.parametrize("form", list(encodings(TOKEN)))
def test_a_value_split_at_any_point_is_masked_whole(form):
    masker = Masker([TOKEN])
    text = TEXT_AROUND.format(encodings(TOKEN)[form], TOKEN)
    for cut in range(1, len(text)):
        shown = stream(masker, [text[:cut], text[cut:]])
        assert "".join(shown) == masker.mask(text) == TEXT_AROUND.format(MASK, MASK), cut


def test_one_character_at_a_time_shows_text_as_soon_as_it_is_settled():
    masker = Masker([TOKEN])
    text = "x" * 100 + TOKEN + "y" * 100
    shown = stream(masker, list(text))
    assert "".join(shown) == "x" * 100 + MASK + "y" * 100
    longest = max(len(form) for form in encodings(TOKEN).values())
    assert len("".join(shown[:100])) >= 100 - longest, "text was held back longer than the longest form"
    assert all(TOKEN[:4] not in piece for piece in shown)


def test_without_secrets_nothing_is_held_back():
    assert Masker([]).mask_settled("abc") == ("abc", "")
