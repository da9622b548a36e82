"""The server's web page in headless chromium, driven through chromedriver."""

import shutil

import numpy as np
import pytest
from PIL import Image

from limner.serving import ServeConfig, create_app
from limner.serving.background import BackgroundServer
from limner.serving.keys import create_key
from tests.conftest import tiny_pipeline


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium and chromium-driver are not installed (scripts/setup.sh installs them when run as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(flag)
    # an explicit driver path: selenium must not try to download one
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    session.set_page_load_timeout(60)
    yield session
    session.quit()


def test_the_page_generates_images_with_a_key(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import torch

    key = create_key(tmp_path / "keys.json", "browser")
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.generator.to_rgb.bias.copy_(torch.tensor([3.0, -3.0, -3.0]))  # red images: easy to see in a screenshot
    app = create_app({"tiny": pipe}, ServeConfig(api_keys_file=str(tmp_path / "keys.json")))
    with BackgroundServer(app) as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        # without the key the page says why it cannot list the models
        wait.until(lambda b: "API key" in b.find_element(By.ID, "status").text)
        browser.find_element(By.ID, "api-key").send_keys(key)
        browser.find_element(By.ID, "prompt").click()  # blur: the key is saved and the models load
        wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "tiny")
        count = browser.find_element(By.ID, "count")
        count.clear()
        count.send_keys("3")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#grid img.generated")) == 3)
        images = browser.find_elements(By.CSS_SELECTOR, "#grid img.generated")
        assert all(b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", im) == 32 for b, im in [(browser, i) for i in images])
        assert "3 image(s)" in browser.find_element(By.ID, "status").text
        shot = tmp_path / "web_page.png"  # kept as the test's artefact
        browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    colourful = ((pixels.max(axis=2) - pixels.min(axis=2)) > 60).mean()
    assert colourful > 0.001, colourful  # the generated images show on the page, not only text
