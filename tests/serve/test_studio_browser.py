"""The studio in a real headless Chromium: submit a prompt, watch the job's progress bar go through the steps
to 100 %, and play the resulting video in the page's <video>.

Needs /usr/bin/chromium and /usr/bin/chromedriver (``scripts/install_chromium.sh``); skipped when they are
missing unless MOVIEGEN_REQUIRE_BROWSER is set, in which case it fails.
"""

import pytest

from helpers import headless_chromium
from moviegen.serve.loadtest import ServerProcess, call


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium-profile", "1280,1200", "--autoplay-policy=no-user-gesture-required",
                               page_load_timeout=20)  # fmt: skip
    yield driver
    driver.quit()


@pytest.mark.slow
def test_submit_watch_progress_reach_100_and_play_the_video(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with ServerProcess(tmp_path / "data", "--model", "tiny=tiny-random", "--token", "t0k") as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        token = wait.until(ec.visibility_of_element_located((By.ID, "token")))
        token.send_keys("t0k")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)  # stores it, reloads
        wait.until(lambda d: d.execute_script("return document.getElementById('model').options.length") == 1)
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a blue square moves up")
        steps = browser.find_element(By.ID, "steps")
        steps.send_keys("200")
        browser.execute_script("""
            window.seen = [];
            new MutationObserver(() => document.querySelectorAll('.bar > div').forEach(
                (b) => window.seen.push(Number(b.dataset.percent)))).observe(
                document.getElementById('gallery'), {subtree: true, attributes: true, childList: true});""")
        browser.find_element(By.ID, "submit").click()
        card = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".job[data-status='done']")))
        bar = card.find_element(By.CSS_SELECTOR, ".bar > div")
        assert bar.get_attribute("data-percent") == "100" and bar.value_of_css_property("width") != "0px"
        seen = browser.execute_script("return window.seen")
        assert any(0 < p < 100 for p in seen) and seen[-1] == 100  # the bar moved through the steps
        assert "a blue square moves up" in card.text
        video = card.find_element(By.TAG_NAME, "video")
        wait.until(lambda d: d.execute_script("return arguments[0].readyState", video) >= 2)
        assert browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", video) == [64, 64]
        played = browser.execute_async_script("""
            const [video, done] = arguments;
            video.currentTime = 0;
            video.play().then(() => setTimeout(() => done(video.currentTime), 400), (e) => done(String(e)));""", video)
        assert isinstance(played, float | int) and played > 0, played
        jobs = call(server.url + "/v1/jobs?token=t0k")[1]["jobs"]
        assert [j["request"]["prompt"] for j in jobs] == ["a blue square moves up"]
        assert jobs[0]["request"]["steps"] == 200 and jobs[0]["status"] == "done"
