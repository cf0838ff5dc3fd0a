"""End to end in a real headless Chromium: two invited raters vote every pair (one by link, one by pasting
the code), then /results, opened with the admin token, must equal report().

Needs /usr/bin/chromium and /usr/bin/chromedriver (Selenium Manager is never used: no network). Skipped
when they are missing unless MOVIEGEN_REQUIRE_BROWSER is set, in which case it fails.
"""

import socket
import threading

import pytest
import torch

from helpers import headless_chromium
from moviegen.eval.humaneval import VoteStore, bind_server, create_app, report
from moviegen.eval.winrate import AXES
from moviegen.video import write_video

CHOICES = ("left", "right", "tie")


@pytest.fixture
def server(tmp_path):
    for level, folder in ((-0.6, "a"), (0.6, "b")):
        for name in ("one", "two", "three"):
            write_video(tmp_path / folder / f"{name}.mp4", torch.full((3, 4, 16, 16), level), fps=8)
    app = create_app(tmp_path / "a", tmp_path / "b", tmp_path / "votes.sqlite", seed=1, admin_token="lab")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    httpd = bind_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", tmp_path / "votes.sqlite"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium-profile", "1280,1600")
    yield driver
    driver.quit()


def test_two_raters_vote_everything_and_results_match_report(browser, server):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, db = server
    wait = WebDriverWait(browser, 10)
    # querying an element while its page navigates away can make ChromeDriver answer "unhandled inspector
    # error" instead of "stale element" on a loaded machine: poll again rather than fail
    navigation = WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,))
    clicked = {}
    store = VoteStore(db)
    tokens = {name: store.invite(name) for name in ("ada", "bob")}
    for r, rater in enumerate(["ada", "bob"]):
        browser.get(f"{url}/logout")
        if r == 0:
            browser.get(f"{url}/join/{tokens[rater]}")
        else:
            wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(tokens[rater])
            browser.find_element(By.ID, "login").click()
        assert wait.until(ec.presence_of_element_located((By.ID, "current-rater"))).text == rater
        for i in range(3):
            wait.until(ec.presence_of_element_located((By.ID, "submit")))
            assert browser.find_element(By.ID, "progress").text == f"Item {i + 1} of 3"
            item = browser.find_element(By.ID, "item").get_attribute("value")
            if i == 0:
                video = browser.find_element(By.ID, "left-video")
                assert video.get_attribute("autoplay") is not None and video.get_attribute("loop") is not None
                status = browser.execute_async_script(
                    "fetch(arguments[0], {headers: {Range: 'bytes=0-3'}}).then(r => arguments[1](r.status));",
                    video.get_attribute("src"),
                )
                assert status == 206  # the session cookie reaches the video route
                wait.until(lambda d, v=video: d.execute_script("return arguments[0].videoWidth;", v) == 16)
            choices = {axis: CHOICES[(r + i + j) % 3] for j, axis in enumerate(AXES)}
            radios = browser.find_elements(
                By.CSS_SELECTOR, ", ".join(f"#{a}-{c}" for a, c in choices.items())
            )
            clicks = ActionChains(browser, duration=0)
            for radio in radios:  # one real mouse click per axis, sent in one batch
                clicks.click(radio)
            clicks.perform()
            clicked.update({(rater, item, axis): c for axis, c in choices.items()})
            submit = browser.find_element(By.ID, "submit")
            submit.click()
            navigation.until(ec.staleness_of(submit))
        assert "All 3 items rated" in wait.until(ec.presence_of_element_located((By.ID, "done"))).text

    votes = VoteStore(db).votes()
    assert len(votes) == len(clicked) == 2 * 3 * len(AXES)
    assert {(v["rater"], v["item"], v["axis"]): v["choice"] for v in votes} == clicked

    browser.get(f"{url}/results")
    assert not browser.find_elements(By.ID, "results")  # 403 without the admin token
    browser.get(f"{url}/results?admin=lab")
    assert browser.current_url == f"{url}/results"  # the token leaves the address bar
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results tr[id]'), r => [r.id.slice(4),"
        " ...['n', 'net', 'sigma', 'significant'].map(c => r.querySelector('.' + c).textContent)]);"
    )
    expected = report(db)
    assert len(expected) == len(AXES)
    assert shown == [
        [r.axis, str(r.n), f"{r.net_win_rate:+.1f}", f"{r.sigma:.1f}", "*" if r.significant else ""]
        for r in expected
    ]
