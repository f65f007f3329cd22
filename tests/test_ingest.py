"""Ingest through the API: every input format becomes passages that are exact spans of
their file, cited to the right article, with opaque fields and site chrome left out.

Small corpora are written into tmp folders and each is indexed once per module with the
session's embedder (see conftest.py); the bundled corpus is indexed once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import query
from indexer.build import build_index
from indexer.documents import parse_file
from indexer.store import ARTICLES, PASSAGES, StoredIndex


BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "corpus"

# --- fixture corpora ---------------------------------------------------------------------

ALPHA_URL = "https://alpha.example.com/2024/06/01/floating-solar"
BETA_URL = "https://beta.example.net/ferry-electric-fleet"
GAMMA_URL = "https://gamma.example.org/2024/06/02/net-zero-port"

ALPHA_TITLE = "Harbour authority opens floating solar farm"
ALPHA_EXCERPT = "The harbour authority switched on a floating solar farm that will power the ferry terminal."
BETA_TITLE = "Ferry operator plans electric fleet"
BETA_EXCERPT = "The ferry operator will replace its diesel boats with battery-electric vessels by 2030."
GAMMA_TITLE = "Port city sets a net zero target"
GAMMA_EXCERPT = "The port city council pledged to reach net zero emissions from its docks within a decade."

# Opaque values: none may reach a passage, an embedded text or articles.json.
OPAQUE = {
    "secured": "Qz7Hk2PfW9vXr4TnLm8Ys1Bd6Gc3Ja5Ue0Io==;Vn5Rt8Ws2Xq6Yp1Zo4Ai==",
    "gamma_secured": "Mw3Lp9Kd0Fs7Jh2Gv5Bn8Cx1Zq4Wr6Ty==;Ui9Op3As7Df2Gh==",
    "amp": "https://alpha.example.com/2024/06/01/floating-solar/amp/",
    "cdn_amp": "https://alpha-example-com.cdn.ampproject.org/c/s/alpha.example.com/2024/06/01/floating-solar/amp/",
    "related_amp": "https://beta.example.net/ferry-electric-fleet/amp/",
    "image": "https://img.alpha.example.com/uploads/solar-panels-7731.jpeg?w=3000",
    "related_image": "https://img.beta.example.net/ferries/electric-7742.png",
    "quality": "8317",
    "heat": "9241",
    "related_quality": "4409",
}

RECORD_ALPHA = f"""---
category: news
title: "{ALPHA_TITLE}"
excerpt: "{ALPHA_EXCERPT}"
publishedDateTime: 2024-06-01T10:00:00Z
originalUrl: "{ALPHA_URL}"
webUrl: "{ALPHA_URL}"
ampWebUrl: "{OPAQUE['amp']}"
cdnAmpWebUrl: "{OPAQUE['cdn_amp']}"
type: article
quality: {OPAQUE['quality']}
heat: {OPAQUE['heat']}
published: false

provider:
  name: Alpha Courier
  domain: alpha.example.com

topics:
  - Energy

images:
  - url: "{OPAQUE['image']}"
    width: 3000
    height: 1688
    isCached: true

related:
  - title: "{BETA_TITLE}"
    excerpt: "{BETA_EXCERPT}"
    publishedDateTime: 2024-05-30T08:00:00Z
    webUrl: "{BETA_URL}"
    ampWebUrl: "{OPAQUE['related_amp']}"
    type: article
    provider:
      name: Beta Maritime Weekly
      domain: beta.example.net
    quality: {OPAQUE['related_quality']}
    images:
      - url: "{OPAQUE['related_image']}"
        width: 800

secured: "{OPAQUE['secured']}"
---
"""

RECORD_GAMMA = f"""---
title: "{GAMMA_TITLE}"
excerpt: >-
  {GAMMA_EXCERPT}
publishedDateTime: "2024-06-02T07:30:00Z"
webUrl: {GAMMA_URL}
provider:
  name: Gamma Post
related:
  - title: '{BETA_TITLE}'
    excerpt: '{BETA_EXCERPT}'
    publishedDateTime: 2024-05-30T08:00:00Z
    webUrl: {BETA_URL}
    provider:
      name: Beta Maritime Weekly
secured: "{OPAQUE['gamma_secured']}"
---
"""

RECORDS = {
    "rec_alpha.txt": RECORD_ALPHA,
    "sub/rec_gamma.md": RECORD_GAMMA,
    "photo.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake jpeg",
    "notes.json": '{"not": "indexed"}\n',
}

TRAM_URL = "https://news.example.com/2024/02/20/tram-line"
BAKERY_URL = "https://food.example.org/2024/02/20/sourdough-award"

RECORD_TRAM = f"""---
title: "City council approves new tram line to the airport"
excerpt: "The council voted to fund a tram line linking the city centre to the airport, with construction starting next spring."
publishedDateTime: 2024-02-20T09:00:00Z
webUrl: "{TRAM_URL}"
provider:
  name: Metro Gazette
---
"""

RECORD_BAKERY = f"""---
title: "Family bakery wins national sourdough award"
excerpt: "A family-run bakery took first prize in the national bread competition for its rye sourdough loaf."
publishedDateTime: 2024-02-20T11:15:00Z
webUrl: "{BAKERY_URL}"
provider:
  name: Food Weekly
---
"""

TRAM_BODY = (
    " date 2024-02-20 The city council voted on Monday to fund a new tram line linking the city centre to "
    "the airport. Construction of the tram line is expected to start next spring, and the first trams should "
    "run within three years.\n"
    "\n"
    "Councillors who backed the plan said the tram would cut traffic on the airport road and give commuters "
    "a faster way into the centre. Opponents warned that the cost of the line could rise, as it did for the "
    "last big transport project in the city.\n"
)

CHESS_BODY = (
    "date: 2024-02-20\n"
    "\n"
    "Regional chess final ends in a draw\n"
    "\n"
    "The regional chess championship ended in a draw after six hours of play, with both grandmasters "
    "agreeing to split the title. The tournament drew a record number of junior players this year.\n"
    "\n"
    "Organisers said next year's event will move to a larger hall to make room for spectators.\n"
)

PAGE = (
    "Science & technology | Deep water\n"
    "\n"
    "Divers map a sunken forest off the coast\n"
    "\n"
    "The trees are thousands of years old\n"
    "\n"
    "A diver swims between pale tree stumps on a sandy seabed\n"
    "Photograph: Maria Lopez\n"
    "\n"
    "Marine archaeologists have mapped a forest of cypress stumps that was drowned when sea levels rose at "
    "the end of the last ice age. The team used sonar and hundreds of dives to record the positions of more "
    "than three hundred trees, some still rooted in their original soil.\n"
    "\n"
    "Read more\n"
    "\n"
    "This article appeared in the Science & technology section of the print edition under the headline "
    "“Drowned woods”\n"
    "\n"
    "From the March 2nd 2024 edition\n"
    "\n"
    "Discover more\n"
    "\n"
    "Volcano tourism booms in Iceland\n"
    "\n"
    "Visitors flock to see lava flows up close\n"
)

BODIES = {
    "tram_record.txt": RECORD_TRAM,
    "bakery_record.txt": RECORD_BAKERY,
    "tram_body.txt": TRAM_BODY,
    "chess_body.txt": CHESS_BODY,
    "page.txt": PAGE,
}

FILE_004 = "004_52d8b2f85732242f.txt"
FILE_002 = "002_d47237756c0cdcf3.txt"
TR_URL = "https://www.technologyreview.com/2023/05/12/1072950/open-source-ai-google-openai-eleuther-meta/"
GOVTECH_URL = "https://www.govtech.com/artificial-intelligence/how-long-will-the-open-source-ai-boom-last"


class Built:
    """An index built once for a module: where it is, its corpus, the report and warnings."""

    def __init__(self, corpus: Path, index: Path, report, warnings: list[str]) -> None:
        self.corpus = corpus
        self.index = index
        self.report = report
        self.warnings = warnings
        self.stored = StoredIndex.open(index)
        self.passages = [passage.to_json() for passage in self.stored.passages()]  # as on disk
        self.articles = {key: article.to_dict() for key, article in self.stored.articles.items()}  # as on disk

    def raw(self, name: str) -> str:
        return (self.stored.generation / name).read_text(encoding="utf-8")

    def passages_with(self, text: str) -> list[dict]:
        return [p for p in self.passages if p["text"] == text]


def _build(make_corpus, embedder, files, name) -> Built:
    corpus = make_corpus(files, name=name)
    index = corpus.parent / "index"
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=index, embedder=embedder, warn=warnings.append)
    return Built(corpus, index, report, warnings)


@pytest.fixture(scope="module")
def records(make_corpus, embedder) -> Built:
    return _build(make_corpus, embedder, RECORDS, "records")


@pytest.fixture(scope="module")
def bodies(make_corpus, embedder) -> Built:
    return _build(make_corpus, embedder, BODIES, "bodies")


@pytest.fixture(scope="module")
def bundled(bundled_index) -> Built:
    return Built(BUNDLED_CORPUS, bundled_index, None, [])


def _file_text(corpus: Path, name: str) -> str:
    # The indexer reads UTF-8 and turns CRLF into LF; spans index that text.
    return (corpus / name).read_bytes().decode("utf-8").replace("\r\n", "\n")


def _only(passages: list[dict], what: str) -> dict:
    assert len(passages) == 1, f"expected exactly one passage {what}, got {len(passages)}: {passages}"
    return passages[0]


# --- front-matter records ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text"),
    [("title", ALPHA_TITLE), ("excerpt", ALPHA_EXCERPT), ("publisher", "Alpha Courier")],
)
def test_record_fields_are_passages_cited_to_the_record(records: Built, kind: str, text: str) -> None:
    passage = _only(records.passages_with(text), f"with text {text!r}")
    assert passage["kind"] == kind
    assert passage["article"] == ALPHA_URL
    own = [s for s in passage["sources"] if s["file"] == "rec_alpha.txt"]
    assert len(own) == 1 and own[0]["listed_by"] is None and own[0]["kind"] == kind
    article = records.articles[ALPHA_URL]
    assert article["url"] == ALPHA_URL
    assert article["publisher"] == "Alpha Courier"
    assert article["published"] == "2024-06-01"
    assert article["title"] == ALPHA_TITLE


def test_a_records_date_is_a_passage_spanning_the_day_of_its_date_field(records: Built) -> None:
    """The date field's YYYY-MM-DD (not its time of day) is a passage of its own, cited to the
    record, and embedded with the publisher and title it dates."""
    dated = [p for p in records.passages if p["kind"] == "date" and p["article"] == ALPHA_URL]
    passage = _only(dated, "dating the alpha record")
    assert passage["text"] == "2024-06-01"
    source = _only([s for s in passage["sources"] if s["file"] == "rec_alpha.txt"], "in rec_alpha.txt")
    assert source["listed_by"] is None
    assert RECORD_ALPHA[slice(*source["chars"])] == "2024-06-01"
    assert RECORD_ALPHA.splitlines()[source["lines"][0] - 1].startswith("publishedDateTime: 2024-06-01T10:00:00Z")
    assert passage["embedded"] == f"Alpha Courier published “{ALPHA_TITLE}” on June 1, 2024 (2024-06-01)."


def test_a_related_entrys_date_dates_that_article_once_for_every_record_listing_it(records: Built) -> None:
    passage = _only([p for p in records.passages if p["kind"] == "date" and p["article"] == BETA_URL], "dating beta")
    assert passage["text"] == "2024-05-30"
    assert {(s["file"], s["listed_by"]) for s in passage["sources"]} == {
        ("rec_alpha.txt", "rec_alpha.txt"), ("sub/rec_gamma.md", "sub/rec_gamma.md")}
    for source in passage["sources"]:
        text = RECORD_ALPHA if source["file"] == "rec_alpha.txt" else RECORD_GAMMA
        assert text[slice(*source["chars"])] == "2024-05-30"
    quoted = _only([p for p in records.passages if p["kind"] == "date" and p["article"] == GAMMA_URL], "dating gamma")
    assert quoted["text"] == "2024-06-02"  # inside the quotes of "2024-06-02T07:30:00Z"


def test_folded_scalar_and_unquoted_fields_of_a_record(records: Built) -> None:
    """A `>-` folded excerpt and an unquoted URL/date string are read like quoted ones."""
    excerpt = _only(records.passages_with(GAMMA_EXCERPT), "for the folded excerpt")
    assert excerpt["article"] == GAMMA_URL and excerpt["kind"] == "excerpt"
    article = records.articles[GAMMA_URL]
    assert (article["publisher"], article["published"], article["url"]) == ("Gamma Post", "2024-06-02", GAMMA_URL)


def test_opaque_fields_never_reach_passages_or_articles(records: Built) -> None:
    stored_passages = records.raw(PASSAGES)
    stored_articles = records.raw(ARTICLES)
    for label, value in OPAQUE.items():
        for passage in records.passages:
            assert value not in passage["text"], f"{label} leaked into passage {passage['id']}"
            assert value not in passage.get("embedded", ""), f"{label} leaked into embedded text of {passage['id']}"
        assert value not in stored_passages, f"{label} leaked into {PASSAGES}"
        assert value not in stored_articles, f"{label} leaked into {ARTICLES}"
    for field in ("secured", "ampWebUrl", "cdnAmpWebUrl", "images", "quality", "heat", "isCached"):
        assert f'"{field}"' not in stored_articles
        assert f'"{field}"' not in stored_passages
        assert not any(field in p["text"] or field in p.get("embedded", "") for p in records.passages)


def test_opaque_fields_of_the_bundled_records_never_reach_the_index(bundled: Built) -> None:
    stored = bundled.raw(PASSAGES) + bundled.raw(ARTICLES)
    checked = 0
    for name in ("000_0731edafe08874d2.txt", "001_b1e94322d9932e65.txt"):
        data = yaml.safe_load(_file_text(BUNDLED_CORPUS, name).split("---")[1])
        values = [data["secured"], data.get("ampWebUrl"), data.get("cdnAmpWebUrl")]
        values += [image["url"] for image in data.get("images", [])]
        for entry in data["related"]:
            values += [entry.get("ampWebUrl"), entry.get("cdnAmpWebUrl")]
            values += [image["url"] for image in entry.get("images", [])]
        for value in filter(None, values):
            assert value not in stored, f"{name}: {value[:40]}… leaked into the index"
            checked += 1
    assert checked >= 6
    for field in ("secured", "ampWebUrl", "cdnAmpWebUrl", "quality", "heat", "isCached"):
        assert f'"{field}"' not in stored, f"field {field} stored"


def test_related_entry_is_cited_to_its_own_article(records: Built) -> None:
    passage = _only(records.passages_with(BETA_EXCERPT), "for the related excerpt")
    assert passage["article"] == BETA_URL
    assert passage["kind"] == "related"
    article = records.articles[BETA_URL]
    assert article["url"] == BETA_URL
    assert article["publisher"] == "Beta Maritime Weekly"
    assert article["published"] == "2024-05-30"
    assert article["title"] == BETA_TITLE
    for source in passage["sources"]:
        assert source["listed_by"] == source["file"], "a related entry is listed by the file it sits in"
    publisher = _only(records.passages_with("Beta Maritime Weekly"), "for the related publisher")
    assert publisher["article"] == BETA_URL
    assert {s["listed_by"] for s in publisher["sources"]} <= {"rec_alpha.txt", "sub/rec_gamma.md"}


def test_related_entry_citation_through_search(records: Built) -> None:
    hits = query.search("battery-electric ferry vessels replacing diesel boats", index=records.index, k=3)
    hit = next(h for h in hits if h.text == BETA_EXCERPT)
    citations = [hit.citation, *hit.also_in]
    assert {c.file for c in citations} == {"rec_alpha.txt", "sub/rec_gamma.md"}
    for citation in citations:
        assert (citation.url, citation.publisher, citation.published) == (BETA_URL, "Beta Maritime Weekly", "2024-05-30")
        assert citation.listed_by == citation.file
        assert citation.kind == "related"


def test_related_entrys_title_is_a_title_passage_of_its_article(records: Built, bundled: Built) -> None:
    title = _only(records.passages_with(BETA_TITLE), "for the related title")
    assert (title["article"], title["text"], title["kind"]) == (BETA_URL, BETA_TITLE, "title")
    assert sorted(s["listed_by"] for s in title["sources"]) == ["rec_alpha.txt", "sub/rec_gamma.md"]
    own = "The open-source AI boom is built on Big Tech’s handouts. How long will it last?"
    passage = _only(bundled.passages_with(own), "for the Technology Review title")
    assert {(s["file"], s["listed_by"]) for s in passage["sources"]} == {
        ("000_0731edafe08874d2.txt", None), ("001_b1e94322d9932e65.txt", "001_b1e94322d9932e65.txt")}
    moats = "Open source AI continues to celebrate as Big Tech mulls over moats"
    assert _only(bundled.passages_with(moats), "for the VentureBeat title")["kind"] == "title"


def test_same_excerpt_from_two_records_is_stored_once_with_both_sources(records: Built) -> None:
    passage = _only(records.passages_with(BETA_EXCERPT), "for the excerpt listed twice")
    assert sorted(s["file"] for s in passage["sources"]) == ["rec_alpha.txt", "sub/rec_gamma.md"]


def test_bundled_excerpt_from_own_record_and_related_entry_is_stored_once(bundled: Built) -> None:
    excerpt = ("Greater access to the code behind generative models is fueling innovation. "
               "But if top companies get spooked, they could close up shop.")
    passage = _only(bundled.passages_with(excerpt), "for the Technology Review excerpt")
    assert passage["article"] == TR_URL
    sources = {(s["file"], s["kind"], s["listed_by"]) for s in passage["sources"]}
    assert sources == {
        ("000_0731edafe08874d2.txt", "excerpt", None),
        ("001_b1e94322d9932e65.txt", "related", "001_b1e94322d9932e65.txt"),
    }
    assert passage["sources"][0]["listed_by"] is None, "the record's own source comes first"
    govtech = _only(bundled.passages_with("Government Technology"), "for the Government Technology publisher")
    assert govtech["article"] == GOVTECH_URL and len(govtech["sources"]) == 2


# --- bare bodies with a leading date -----------------------------------------------------


def test_leading_date_is_read_and_not_part_of_any_passage(bodies: Built, bundled: Built) -> None:
    for built, name in ((bodies, "tram_body.txt"), (bodies, "chess_body.txt"), (bundled, FILE_002)):
        own = [p for p in built.passages if any(s["file"] == name for s in p["sources"])]
        assert own, f"{name} has no passages"
        for passage in own:
            assert not passage["text"].lstrip().lower().startswith(("date", "2024-", "2023-"))
            assert "2024-02-20" not in passage["text"] and "2023-05-12" not in passage["text"]
    chess = bodies.articles["file:chess_body.txt"]
    assert chess["published"] == "2024-02-20"
    assert chess["title"] == "Regional chess final ends in a draw"
    first = min((p for p in bundled.passages if p["sources"][0]["file"] == FILE_002), key=lambda p: p["id"])
    assert first["text"].startswith("Companies like Google")


def test_body_is_linked_to_the_same_day_record_it_overlaps(bodies: Built) -> None:
    assert [(link["file"], link["article"]) for link in bodies.report.links] == [("tram_body.txt", TRAM_URL)]
    body = [p for p in bodies.passages if p["sources"][0]["file"] == "tram_body.txt"]
    assert body and all(p["article"] == TRAM_URL for p in body)
    assert "file:tram_body.txt" not in bodies.articles
    article = bodies.articles[TRAM_URL]
    assert (article["publisher"], article["published"], article["url"]) == ("Metro Gazette", "2024-02-20", TRAM_URL)
    assert article["details"].get("body_file") == "tram_body.txt"
    assert "body_file" not in bodies.articles[BAKERY_URL]["details"]
    hits = query.search("What did opponents of the tram plan warn about its cost?", index=bodies.index, k=5)
    hit = next(h for h in hits if h.citation.file == "tram_body.txt")
    assert (hit.citation.url, hit.citation.publisher, hit.citation.published) == (TRAM_URL, "Metro Gazette", "2024-02-20")


def test_body_with_other_content_on_the_same_day_is_not_linked(bodies: Built) -> None:
    assert all(link["file"] != "chess_body.txt" for link in bodies.report.links)
    chess = [p for p in bodies.passages if p["sources"][0]["file"] == "chess_body.txt"]
    assert chess and all(p["article"] == "file:chess_body.txt" for p in chess)
    article = bodies.articles["file:chess_body.txt"]
    assert article["url"] is None and article["publisher"] is None
    hit = query.search("Who won the regional chess championship?", index=bodies.index, k=1)[0]
    assert hit.citation.file == "chess_body.txt"
    assert hit.citation.url is None


def test_bundled_body_is_linked_to_the_technology_review_record(bundled: Built) -> None:
    body = [p for p in bundled.passages if p["sources"][0]["file"] == FILE_002]
    assert body and all(p["article"] == TR_URL for p in body)
    assert bundled.stored.manifest["links"][0]["file"] == FILE_002
    assert [link["article"] for link in bundled.stored.manifest["links"]] == [TR_URL]


# --- scraped pages and site chrome -------------------------------------------------------

BUNDLED_CHROME = [
    "Explore more",
    "Discover more",
    "Explore the edition",
    "Discover stories from this section and more in the list of contents",
    "A glowing blue book emits swirling binary code",
    "Peace in Lebanon is just a start",
    "A man waves the Lebanese flag",
    "Donald Trump must build on Joe Biden’s belated success",
    "From Nixon to China, to Trump to Tehran",
    "This illustration shows a graduation cap",
    "Too many master’s courses are expensive and flaky",
    "Elon Musk is Donald Trump’s disrupter-in-chief",
    "Why British MPs should vote for assisted dying",
    "A long-awaited liberal reform is in jeopardy",
]
PAGE_CHROME = [
    "Read more",
    "Discover more",
    "A diver swims between pale tree stumps",
    "Volcano tourism booms in Iceland",
    "Visitors flock to see lava flows up close",
]


@pytest.mark.parametrize(("which", "chrome"), [("bundled", BUNDLED_CHROME), ("bodies", PAGE_CHROME)])
def test_site_chrome_is_in_no_passage(request, which: str, chrome: list[str]) -> None:
    built: Built = request.getfixturevalue(which)
    for passage in built.passages:
        for piece in chrome:
            assert piece not in passage["text"], f"chrome {piece!r} in passage {passage['id']}"
            assert piece not in passage.get("embedded", "")


@pytest.mark.parametrize(
    ("which", "file", "lines", "details"),
    [
        (
            "bundled", FILE_004,
            ["Illustration: Nicholas Kempton",
             "This article appeared in the Leaders section of the print edition under the headline “Freedom to tinker”",
             "From the November 9th 2024 edition"],
            {"section": "Leaders", "print_headline": "Freedom to tinker", "edition_date": "2024-11-09",
             "illustration": "Nicholas Kempton"},
        ),
        (
            "bodies", "page.txt",
            ["Photograph: Maria Lopez",
             "This article appeared in the Science & technology section of the print edition under the headline "
             "“Drowned woods”",
             "From the March 2nd 2024 edition"],
            {"section": "Science & technology", "print_headline": "Drowned woods", "edition_date": "2024-03-02",
             "photograph": "Maria Lopez"},
        ),
    ],
)
def test_article_details_are_passages_and_parsed(request, which, file, lines, details) -> None:
    built: Built = request.getfixturevalue(which)
    key = f"file:{file}"
    for line in lines:
        passage = _only(built.passages_with(line), f"for {line!r}")
        assert passage["article"] == key
        assert passage["sources"][0]["file"] == file
    article = built.articles[key]
    for name, value in details.items():
        assert article["details"].get(name) == value, name
    assert article["published"] == details["edition_date"]


def test_page_text_around_the_chrome_is_kept(bodies: Built) -> None:
    texts = [p["text"] for p in bodies.passages if p["sources"][0]["file"] == "page.txt"]
    assert "Divers map a sunken forest off the coast" in texts
    assert any(t.startswith("Marine archaeologists have mapped a forest") for t in texts)
    assert bodies.articles["file:page.txt"]["title"] == "Divers map a sunken forest off the coast"


def test_subheading_that_starts_with_a_cue_word_does_not_end_the_article(write_corpus) -> None:
    from indexer.documents import parse_file

    corpus = write_corpus({"markets.txt": (
        "Markets slump as chipmaker warns\n\n"
        "Shares in the chipmaker fell sharply on Thursday after the company warned that demand from data "
        "centres would weaken over the coming year, dragging the wider index down with it.\n\n"
        "Share prices tumble\n\n"
        "The sell-off spread to other technology firms, and the index closed two per cent lower, its worst "
        "day since March.\n"
    )})
    parsed = parse_file(corpus / "markets.txt", "markets.txt")
    kept = [parsed.text[s.start:s.end] for s in parsed.segments]
    assert any(text.startswith("The sell-off spread to other technology firms") for text in kept), kept


def test_ask_about_a_teaser_abstains(bundled_index: Path) -> None:
    answer = query.ask("Why should MPs vote for assisted dying?", index=bundled_index)
    assert answer.answer is None
    assert not answer.confident
    assert answer.citations == []
    assert answer.hits, "the nearest passages are still returned"
    for hit in answer.hits:
        assert "assisted dying" not in hit.text.lower()


def test_search_finds_the_edition_line(bundled_index: Path) -> None:
    hits = query.search("Which edition carried it?", index=bundled_index, k=3)
    matching = [h for h in hits if h.text == "From the November 9th 2024 edition"]
    assert matching, [h.text for h in hits]
    citation = matching[0].citation
    assert citation.file == FILE_004
    assert citation.published == "2024-11-09"
    assert citation.lines == (16, 16)


# --- passages are spans of their files ---------------------------------------------------


@pytest.mark.parametrize("which", ["bundled", "records", "bodies"])
def test_every_passage_is_an_exact_span_of_every_source(request, which: str) -> None:
    built: Built = request.getfixturevalue(which)
    texts: dict[str, str] = {}
    assert built.passages
    for passage in built.passages:
        assert passage["sources"]
        for source in passage["sources"]:
            if source["file"] not in texts:
                texts[source["file"]] = _file_text(built.corpus, source["file"])
            text = texts[source["file"]]
            start, end = source["chars"]
            assert 0 <= start < end <= len(text)
            assert text[start:end] == passage["text"], (source, passage["text"][:60])
            first = text.count("\n", 0, start) + 1
            last = text.count("\n", 0, end - 1) + 1
            assert source["lines"] == [first, last], source
    assert [p["id"] for p in built.passages] == list(range(len(built.passages)))


@pytest.mark.parametrize("which", ["bundled", "records", "bodies"])
def test_no_passage_exceeds_the_model_sequence_length(request, embedder, which: str) -> None:
    built: Built = request.getfixturevalue(which)
    limit = embedder.max_seq_length
    for passage in built.passages:
        embedded = passage.get("embedded", passage["text"])
        size = len(embedder.tokenizer(embedded)["input_ids"])  # special tokens included
        assert size <= limit, f"passage {passage['id']} is {size} tokens, over {limit}"


def test_long_body_is_cut_within_the_model_limit(write_corpus, embedder, tmp_path: Path) -> None:
    """One long paragraph and one 'sentence' without stops both become passages within the limit."""
    sentences = "".join(f"The river authority said water levels would keep rising through day {day} as rain continued. "
                        for day in range(60))
    corpus = write_corpus({
        "long.txt": "Flood warning\n\n" + sentences + "\n\n" + " ".join(["downstream"] * 700) + "\n",
    })
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    stored = StoredIndex.open(tmp_path / "index")
    text = _file_text(corpus, "long.txt")
    passages = stored.passages()
    assert len(passages) > 5
    for passage in passages:
        start, end = passage.sources[0].chars
        assert text[start:end] == passage.text
        size = len(embedder.tokenizer(passage.embed_text)["input_ids"])
        assert size <= embedder.max_seq_length


# --- files that are not text --------------------------------------------------------------


def test_non_text_files_are_skipped_with_a_warning(records: Built) -> None:
    for name in ("photo.jpg", "notes.json"):
        mentions = [w for w in records.warnings if w.startswith(f"{name}:")]
        assert len(mentions) == 1, records.warnings
        assert "skipped" in mentions[0]
    files = records.stored.manifest["files"]
    assert set(files) == {"rec_alpha.txt", "sub/rec_gamma.md"}
    assert records.report.files == 2
    assert records.report.skipped == [], "non-text files are not parse failures"
    assert all(s["file"] in files for p in records.passages for s in p["sources"])
    assert json.dumps(records.articles).find("photo.jpg") == -1


@pytest.mark.parametrize("value", [
    "&t Anchored title here", "!!str 1984 is a year", '&t "Quoted title"', "!!str 'Single quoted'", "&a !!str |\n  Block title",
])
def test_a_title_span_leaves_out_yaml_anchors_and_tags(tmp_path, value):
    path = tmp_path / "y.md"
    path.write_text(f"---\ntitle: {value}\nwebUrl: https://example.com/a\n---\nBody text here.\n", encoding="utf-8")
    parsed = parse_file(path, "y.md")
    [title] = [s for s in parsed.segments if s.kind == "title"]
    assert parsed.text[title.start : title.end] == parsed.articles["https://example.com/a"].title


@pytest.mark.parametrize(("field", "span"), [
    ("publishedDateTime: 2023-05-12T10:00:00+02:00", "2023-05-12"),
    ("date: '  2023-05-12 (updated)'", "2023-05-12"),
    ("date: |\n  2023-05-12", "2023-05-12"),
    ("publishedDateTime: 2023-5-2T10:00:00Z", "2023-5-2T10:00:00Z"),  # a timestamp YAML reads, not zero-padded
    ('date: "\\t2023-05-12"', "\\t2023-05-12"),  # an escape: the value as the file writes it
])
def test_a_date_passage_is_the_day_its_field_opens_with_else_the_whole_value(tmp_path, field, span):
    path = tmp_path / "d.md"
    path.write_text(f"---\ntitle: Dated\n{field}\nwebUrl: https://example.com/d\n---\nBody text here.\n", encoding="utf-8")
    parsed = parse_file(path, "d.md")
    [dated] = [s for s in parsed.segments if s.kind == "date"]
    assert parsed.text[dated.start : dated.end] == span


def test_a_date_merged_from_an_anchor_is_a_span_of_the_anchor(tmp_path):
    path = tmp_path / "m.md"
    path.write_text("---\ntitle: Own\nwebUrl: https://example.com/own\ndefaults: &d\n  publishedDateTime: 2023-05-11T10:00:00Z\n"
                    "related:\n  - <<: *d\n    title: Other story\n    url: https://example.com/other\n---\nBody.\n",
                    encoding="utf-8")
    parsed = parse_file(path, "m.md")
    [dated] = [s for s in parsed.segments if s.kind == "date"]
    assert (dated.article, parsed.text[dated.start : dated.end]) == ("https://example.com/other", "2023-05-11")


def test_a_date_with_no_title_or_publisher_is_no_passage(tmp_path):
    path = tmp_path / "n.md"
    path.write_text("---\ndate: 2023-05-11\nwebUrl: https://example.com/n\n---\nBody text here.\n", encoding="utf-8")
    assert not [s for s in parse_file(path, "n.md").segments if s.kind == "date"]


def test_a_date_is_spelled_in_english_whatever_the_locale():
    from indexer.passages import spelled_date

    assert spelled_date("2023-05-12") == "May 12, 2023" and spelled_date("2024-11-09") == "November 9, 2024"


def test_classic_mac_line_ends_are_lines(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes(b"date 2024-05-17\r\rKites fly over Brighton.\r\rParrots live in the Amazon.\r")
    parsed = parse_file(path, "mac.txt")
    assert parsed.body_date == "2024-05-17" and "\r" not in parsed.text
    assert [parsed.text[s.start : s.end] for s in parsed.segments] == ["Kites fly over Brighton.", "Parrots live in the Amazon."]


def test_a_title_too_long_to_be_context_is_left_out_of_what_is_embedded(write_corpus, tmp_path, embedder) -> None:
    """An excerpt is embedded after its title; a 300-word title would fill the model's 256
    tokens, truncating the excerpt away (every excerpt passage would embed as the title)."""
    title = " ".join(f"headline{i}" for i in range(300))
    excerpt = " ".join(f"Ferries cross the bay number {i}." for i in range(40))
    corpus = write_corpus({"long.md": f"---\ntitle: {title}\nexcerpt: {excerpt}\n---\nBody text about ferries.\n"})
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    limit = embedder.max_seq_length
    for passage in StoredIndex.open(tmp_path / "index").passages():
        embedded = passage.embed_text
        assert len(embedder.tokenizer(embedded)["input_ids"]) <= limit, passage.kind
        if passage.kind == "excerpt":
            assert "headline0" not in embedded


def test_a_blank_title_or_excerpt_makes_no_passage(tmp_path):
    path = tmp_path / "b.md"
    path.write_text("---\ntitle: Own story\nexcerpt: '   '\nwebUrl: https://example.com/own\n"
                    "related:\n  - title: ' '\n    excerpt: A teaser of the other story.\n    url: https://example.com/other\n"
                    "---\nBody.\n", encoding="utf-8")
    parsed = parse_file(path, "b.md")
    spans = [(s.kind, s.article, parsed.text[s.start : s.end]) for s in parsed.segments if s.kind != "body"]
    assert spans == [("title", "https://example.com/own", "Own story"),
                     ("related", "https://example.com/other", "A teaser of the other story.")]
