"""The search page in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import pytest
from serving import ROOT, Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "docs" / "img" / "search-page.png"
QUESTION = "Who is the executive director of EleutherAI?"
HOSTILE = {
    "hostile.md": (
        "---\ntitle: Harbour <b>notice</b> <img src=x onerror=\"document.title='pwned'\">\n"
        "publisher: Port <script>document.title='pwned'</script> Gazette\npublished: 2024-03-01\n"
        "url: javascript:document.title='pwned'\n---\n\n"
        "The harbour ferry timetable changes on Monday. <script>document.title='pwned'</script>\n\n"
        "Ferry tickets are sold at the pier <img src=x onerror=\"document.title='pwned'\"> from seven.\n"
    ),
    "calm.md": "---\ntitle: Library hours\n---\n\nThe library opens at nine on weekdays.\n",
}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def chromium(url: str, tmp_path: Path, *args: str) -> str:
    """Load ``url`` headless, let its script run, and return the DOM as serialised after it."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000", *args, url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def element(dom: str, ident: str) -> str:
    """The inner HTML of the element with id ``ident`` (one that holds no element of its own tag)."""
    found = re.search(rf'<(\w+) id="{ident}"[^>]*>(.*?)</\1>', dom, flags=re.S)
    assert found, f"no #{ident} in the page"
    return found.group(2)


@pytest.fixture(scope="module")
def bundled_server(bundled_index: Path):
    with Server(bundled_index) as running:
        yield running


def test_a_shared_link_opens_with_the_answer_and_its_citation(bundled_server: Server, tmp_path: Path) -> None:
    url = f"{bundled_server.url}/?{urlencode({'q': QUESTION})}"
    dom = chromium(url, tmp_path, "--dump-dom")
    answer = unescape(re.sub(r"<[^>]+>", "", element(dom, "answer-text")))
    assert "Stella Biderman" in answer
    assert '<section id="answer">' in dom  # shown, no longer hidden
    assert "[002_d47237756c0cdcf3.txt:9-9]" in dom and "MIT Technology Review" in dom and "2023-05-12" in dom
    assert 'href="https://www.technologyreview.com/2023/05/12/1072950/' in dom
    marked = re.findall(r"<mark>(.*?)</mark>", dom, flags=re.S)
    assert len(marked) == 1 and unescape(marked[0]) == answer
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    chromium(url, tmp_path, f"--screenshot={SCREENSHOT}", "--window-size=900,640", "--hide-scrollbars")
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


def test_markup_in_a_hostile_corpus_is_shown_as_text(make_corpus, embedder, tmp_path_factory, tmp_path: Path) -> None:
    from indexer.build import build_index

    index = tmp_path_factory.mktemp("hostile") / "index"
    build_index(corpus=make_corpus(HOSTILE, name="hostile"), index=index, embedder=embedder)
    with Server(index) as server:
        dom = chromium(f"{server.url}/?{urlencode({'q': 'ferry tickets harbour timetable'})}", tmp_path, "--dump-dom")
    hits = element(dom, "hits")
    assert "<title>semindex</title>" in dom  # no injected handler or script ran
    assert "<img" not in hits and "<script" not in hits and "<b>" not in hits
    assert "&lt;img src=x onerror=" in hits and "&lt;script&gt;document.title=" in hits
    assert "Harbour &lt;b&gt;notice&lt;/b&gt;" in hits
    assert 'href="javascript:' not in dom
