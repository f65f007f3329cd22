"""A reader model's answer is shown only as the passage's own text: matching after
normalisation, mapped back to the passage's characters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from query.llm_span import clean_answer, evidence_span, find_span, normalized

PASSAGE = "Stella Biderman, who divides her time between EleutherAI,\nwhere she is “executive director” — and Booz Allen."


def test_a_copy_with_straight_quotes_and_joined_lines_maps_to_the_passage_text():
    span = find_span('EleutherAI, where she is "executive director" - and', PASSAGE)
    assert span is not None
    assert PASSAGE[span[0]:span[1]] == "EleutherAI,\nwhere she is “executive director” — and"


def test_case_sensitive_match_wins_then_case_blind():
    text = "the Pile is a data set; THE PILE was big"
    assert text[slice(*find_span("THE PILE", text))] == "THE PILE"
    assert text[slice(*find_span("The pile", text))] == "the Pile"


def test_no_match_inside_a_word_and_none_for_text_not_there():
    assert find_span("art", "a party for all") is None
    assert find_span("Brazil", PASSAGE) is None
    assert find_span("", PASSAGE) is None


def test_clean_answer_drops_labels_wrapping_quotes_and_the_final_stop():
    assert clean_answer('Answer: "They could close up shop."\nBecause ...') == "They could close up shop"
    assert clean_answer("  (Google)  ") == "Google"
    assert clean_answer("") == ""


def test_evidence_is_the_sentence_holding_the_answer():
    text = "First one. Stella Biderman leads it. Last one."
    start = text.index("Stella")
    evidence = evidence_span(text, (start, start + len("Stella Biderman")))
    assert text[evidence[0]:evidence[1]] == "Stella Biderman leads it."


words = st.lists(st.sampled_from(["alpha", "beta", "“gamma”", "delta—x", "it’s", "e.g.", "\n", "  "]), min_size=1, max_size=12)


@given(words, st.data())
def test_any_run_of_whole_words_is_found_and_normalises_to_itself(parts, data):
    text = " ".join(parts)
    tokens = text.split()
    if not tokens:
        return
    first = data.draw(st.integers(0, len(tokens) - 1))
    last = data.draw(st.integers(first, len(tokens) - 1))
    answer = " ".join(tokens[first:last + 1]).replace("“", '"').replace("”", '"').replace("’", "'")
    wanted = answer.strip(" \t\n\"'.,;:!?()[]")
    span = find_span(answer, text)
    if not wanted:
        assert span is None
        return
    assert span is not None
    assert normalized(text[span[0]:span[1]])[0] == normalized(wanted)[0]
