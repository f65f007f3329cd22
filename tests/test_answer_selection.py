"""What `ask` may give as an answer: answer kinds, IDF-weighted wording, no restated questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from query import ask
from query.answer import answers_this_kind_of_question
from query.answer_kinds import QUANTITY, WHEN, WHO, expected_kind, kind_fit

INDEX = Path(__file__).resolve().parent.parent / "index"


@pytest.mark.parametrize("question, kind", [
    ("Who runs EleutherAI?", WHO),
    ("  whose memo leaked?", WHO),
    ("When was EleutherAI founded?", WHEN),
    ("In what year did Meta release LLaMA?", WHEN),
    ("On which date did the piece appear?", WHEN),
    ("What was the publication date of the govtech.com article?", WHEN),
    ("Which print edition carried the leader on open-source AI?", WHEN),  # a paper's edition is named by its date
    ("What edition of the paper ran it?", WHEN),
    ("What is the release year of LLaMA?", WHEN),
    ("How many parameters does GPT-4 have?", QUANTITY),
    ("How much did Meta spend?", QUANTITY),
    ("What did Google reveal?", None),
    ("Which company made PyTorch?", None),
    ("How do open models compare?", None),
    ("Where is EleutherAI based?", None),
    ("According to the memo, who is eating Google's lunch?", WHO),  # a lead-in before the question word
    ("Since when has Pineau led Meta AI?", WHEN),
    ("Exactly how many models build on LLaMA?", QUANTITY),
    ("How big is the Pile?", QUANTITY),  # a size is a number too
    ("How long will the boom last?", QUANTITY),
    ("What did the engineer who wrote the memo say?", None),  # "who" of a clause, not the question
    ("According to the piece on how open source wins, who leaked the memo?", WHO),  # the clause after the comma
    ("Did the engineer who wrote the memo work at Google?", None),  # a yes/no question
    ("Does the article say who funds EleutherAI?", None),
    ("What is the day job of Stella Biderman?", None),  # a day job is no time
    ("What was the year's biggest release?", None),
    ("What's the publication date of the piece?", WHEN),
])
def test_expected_kind_reads_the_question_opening(question, kind):
    assert expected_kind(question) == kind


@pytest.mark.parametrize("kind, question, text, fit", [
    (WHO, "Who runs EleutherAI?", "Stella Biderman is its executive director.", 2),
    (WHO, "Who runs EleutherAI?", "EleutherAI exists because OpenAI was open.", 1),  # one capitalised word
    (WHO, "Who runs EleutherAI?", "It exists because coders were free.", 0),
    (WHO, "Who runs EleutherAI?", "EleutherAI is run by volunteers.", 0),  # the name asked about
    (WHO, "Who is Meta AI's managing director?", "Meta AI has done a great job.", 0),
    (WHO, "Who made it?", "“The coders made it,” she says.", 0),  # a quote's first word is no name
    (WHO, "Who made PyTorch?", "PyTorch was created by Google and Meta.", 1),
    (WHO, "Who consults?", "She also works for Booz Allen Hamilton.", 2),
    (WHO, "Who drew it?", "Illustration: Nicholas Kempton", 2),
    (WHO, "Who wrote it?", "Lessons from the Open-Source Community", 0),  # a heading, not a name
    (WHO, "Who wrote the review?", "A Google engineer's memo leaked.", 1),  # Google, not "A Google"
    (WHEN, "When was it founded?", "It was founded in 2020.", 1),
    (WHEN, "When was it founded?", "It was founded by a bunch of coders.", 0),
    (WHEN, "When did it appear?", "From the November 9th 2024 edition", 1),
    (WHEN, "When will it happen?", "It may happen.", 0),  # the verb, not the month
    (WHEN, "When was it published?", "Published 2023-05-12.", 1),
    (WHEN, "When in 2023 was it published?", "2023-05-15", 1),  # the whole date, not its year, is the time
    (QUANTITY, "How many parameters does GPT-4 have?", "GPT-4 is large.", 0),  # the 4 of its name
    (QUANTITY, "How many parameters does GPT-4 have?", "It has 1.8 trillion parameters.", 1),
    (QUANTITY, "How much did it cost?", "It cost five million dollars.", 1),
    (QUANTITY, "How much did it cost?", "It cost a lot.", 0),
])
def test_kind_fit_needs_a_name_time_or_quantity_the_question_lacks(kind, question, text, fit):
    assert kind_fit(kind, question=question, text=text) == fit


def test_a_publishers_name_is_a_full_name_however_many_words():
    assert kind_fit(WHO, question="Who published the story?", text="VentureBeat") == 0  # the first word of a sentence
    assert kind_fit(WHO, question="Who published the story?", text="VentureBeat", is_name=True) == 2
    assert kind_fit(WHO, question="Did VentureBeat publish it?", text="VentureBeat", is_name=True) == 0


def test_who_published_a_title_is_answered_with_its_one_word_publisher():
    answer = ask("Who published “Open source AI continues to celebrate as Big Tech mulls over moats”?", index=INDEX)
    assert answer.confident and answer.answer == "VentureBeat" and answer.citations[0].kind == "publisher"


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown answer kind"):
        kind_fit("colour", question="What colour?", text="Red.")


def test_wording_weighs_rare_question_words_above_common_ones():
    from query.answer import Wording
    from query.index import open_searcher

    wording = Wording("What do critics of open-source AI models underestimate?", keyword=open_searcher(INDEX).keyword)
    answer = "Their critics dwell on the dangers and underestimate the benefits"
    title = "Why open-source AI models are good for the world"
    assert wording.coverage(answer) > wording.coverage(title)  # 2 rare words against 4 common ones
    assert wording.adds_to_question(answer) and wording.adds_to_question(title)
    assert not wording.adds_to_question("Open-source AI models: critics underestimate!")


def test_function_words_are_no_wording():
    from query.answer import Wording
    from query.index import open_searcher

    wording = Wording("Why is that so?", keyword=open_searcher(INDEX).keyword)
    assert wording.weights == {} and wording.coverage("It moves so quickly.") == 0.0


def test_who_runs_eleutherai_is_answered_with_a_name():
    answer = ask("Who runs EleutherAI?", index=INDEX)
    assert answer.confident and "Stella Biderman" in answer.answer


@pytest.mark.parametrize("question", ["When was EleutherAI founded?", "How many parameters does the LLaMA model have?",
                                      "How big is the Pile data set?"])
def test_a_question_whose_kind_of_answer_is_nowhere_is_not_answered(question):
    answer = ask(question, index=INDEX)
    assert answer.answer is None and not answer.confident and answer.hits


def test_a_title_that_restates_the_question_is_not_its_answer():
    question = 'Who drew the illustration for "Why open-source AI models are good for the world"?'
    answer = ask(question, index=INDEX)
    assert answer.answer != "Why open-source AI models are good for the world"
    assert answer.answer is None or "Nicholas Kempton" in answer.answer


@pytest.mark.parametrize("question, date, file", [
    ("When did MIT Technology Review run its story on the open-source AI boom?", "2023-05-12", "000_0731edafe08874d2.txt"),
    ("What was the publication date of the VentureBeat article about Big Tech mulling over moats?", "2023-05-15",
     "001_b1e94322d9932e65.txt"),
])
def test_a_when_question_about_an_article_is_answered_with_its_date_in_the_file(question, date, file):
    answer = ask(question, index=INDEX)
    assert answer.confident and answer.answer == date
    citation = answer.citations[0]
    assert citation.kind == "date" and citation.file == file and citation.published == date
    text = (INDEX.parent / "corpus" / file).read_text(encoding="utf-8")
    assert text[slice(*answer.answer_chars)] == date


def test_a_bare_date_answers_no_question_but_when():
    answer = ask("What was the VentureBeat story related to the open-source AI boom called?", index=INDEX)
    assert answer.answer is None or "2023" not in answer.answer
    assert any(hit.citation.kind == "date" for hit in answer.hits)  # it was there to take


@pytest.mark.parametrize("passage_kind, listed, question, answers", [
    ("date", True, "When did VentureBeat publish its story on moats?", True),
    ("date", True, "When did the related VentureBeat article come out?", True),
    ("date", False, "When will the open-source AI boom end?", False),  # no article, no publication
    ("date", False, "What did VentureBeat publish?", False),  # not a when-question
    ("publisher", False, "Which outlet ran the story?", True),
    ("publisher", True, "Who is the publisher of the article?", True),
    ("publisher", False, "Who is quoted in the story about moats?", False),  # its subject, not where it appeared
    ("body", False, "Who funds the open-source AI boom?", True),
    ("related", True, "Who wrote the leaked Google memo?", False),  # a teaser's loaded words answer no who
    ("related", True, "Who reportedly wrote the leaked Google memo?", False),
    ("related", True, "According to the VentureBeat story, who wrote the memo?", False),
    ("related", True, "What did the related story say signals Big Tech worries?", True),
    ("related", True, "What was reported about the open-source AI community?", True),
    ("related", True, "What does VentureBeat say signals Big Tech worries?", True),  # names its publisher
    ("related", True, "What does venturebeating mean?", False),  # its publisher as a word, not inside one
    ("title", True, "What was the VentureBeat story about moats called?", True),
    ("title", True, "What was VentureBeat's headline about moats?", True),
    ("title", False, "What was the article entitled?", True),
    ("title", True, "Which reporter wrote the VentureBeat story on open source AI celebrating?", False),
    ("title", False, "How does the leader on open-source AI define an open-source model?", False),
    ("title", False, "Until when is the Pinecrest bridge closed?", True),  # a headline states news too
])
def test_a_metadata_title_or_listed_passage_answers_only_questions_about_that(passage_kind, listed, question, answers):
    from query.answer_kinds import expected_kind

    assert answers_this_kind_of_question(passage_kind, question=question, kind=expected_kind(question),
                                         listed=listed, publisher="VentureBeat") is answers


def test_a_publisher_is_named_as_a_whole_word_whatever_its_last_character():
    assert answers_this_kind_of_question("related", question="What did Yahoo! say about moats?", kind=None,
                                         listed=True, publisher="Yahoo!")
    assert not answers_this_kind_of_question("related", question="What did Yahoo!Finance say?", kind=None,
                                             listed=True, publisher="Yahoo!")


def test_a_publication_naming_itself_names_no_answer():
    sentence = "(Google confirmed to MIT Technology Review that the memo was written by one of its employees.)"
    assert kind_fit(WHO, question="Who wrote the memo?", text=sentence) == 2
    assert kind_fit(WHO, question="Who wrote the memo?", text=sentence, reporter="MIT Technology Review") == 0
    assert kind_fit(WHO, question="Who wrote the memo?", text="It was written by Sernau, MIT Technology Review says.",
                    reporter="MIT Technology Review") == 1
    assert kind_fit(WHO, question="Who built the robot?", text="It was built by a team at MIT.",
                    reporter="MIT Technology Review") == 1  # another name sharing a word with it


def test_a_headline_answers_no_question_about_its_articles_subject():
    answer = ask("Which reporter wrote the VentureBeat story on open source AI celebrating?", index=INDEX)
    assert not answer.confident or answer.citations[0].kind not in ("title", "related")


def test_a_headline_answers_a_question_its_words_answer():
    answer = ask("What is the open-source AI boom built on?", index=INDEX)
    assert answer.confident and answer.citations[0].kind == "title" and "handouts" in answer.answer


def test_who_wrote_the_memo_is_answered_from_the_article_not_a_teaser():
    answer = ask("Who wrote the leaked Google memo?", index=INDEX)
    assert answer.confident and "Sernau" in answer.answer
    assert answer.citations[0].kind == "body"


@pytest.mark.parametrize("question", ["When will the open-source AI boom end, according to Big Tech?",
                                      "Who funds the open-source AI boom?"])
def test_a_question_about_an_articles_subject_gets_no_date_or_publisher(question):
    answer = ask(question, index=INDEX)
    assert not answer.confident or answer.citations[0].kind not in ("date", "publisher")
