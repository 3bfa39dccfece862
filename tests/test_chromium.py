"""Every message, both languages, as headless Chromium lays it out at 375 px and 600 px wide."""

from __future__ import annotations

import dataclasses
import html as htmllib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from notifier.core.messages import Template
from notifier.core.render import LOCALES, Renderer
from notifier.testing.samples import render_preview, sample_context

WIDTHS = (375, 600)
DOCS_MESSAGES = Path(__file__).resolve().parent.parent / "docs" / "messages"
# Chromium's own command line, as the team's CI runs it: no sandbox (containers), no network
# services of its own, and a fresh profile per run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)

# Each message is loaded into an iframe of the exact width through srcdoc (same origin as the
# harness, so its layout can be measured); one Chromium start measures them all. For each frame:
# the layout width against the frame width (horizontal overflow), anything that needs images to
# be read, and every character drawn with the page's font compared with the box Chromium draws
# for a character no font has (a missing glyph).
HARNESS = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head>
<body style="margin:0">
<pre id="probe">pending</pre>
<script>
const pages = __PAGES__;
const frames = [];
for (const page of pages) {
  const f = document.createElement("iframe");
  f.style.cssText = `width:${page.width}px;height:900px;border:0;display:block`;
  f.srcdoc = page.html;
  document.body.appendChild(f);
  frames.push(new Promise(ok => f.addEventListener("load", () => ok([page, f]))));
}
const canvas = document.createElement("canvas");
canvas.width = 48; canvas.height = 48;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
function pixels(ch, font) {
  ctx.clearRect(0, 0, 48, 48);
  ctx.font = font; ctx.fillStyle = "#000"; ctx.textBaseline = "top";
  ctx.fillText(ch, 4, 4);
  return Array.from(ctx.getImageData(0, 0, 48, 48).data).join(",");
}
Promise.all(frames).then(loaded => {
  const results = [];
  for (const [page, f] of loaded) {
    const doc = f.contentDocument;
    const win = f.contentWindow;
    const root = doc.documentElement;
    const wide = [];
    for (const el of doc.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > win.innerWidth + 0.5 && win.getComputedStyle(el).display !== "none") {
        wide.push(el.tagName + ":" + (el.textContent || "").trim().slice(0, 40));
      }
    }
    const imagery = [];
    for (const el of doc.querySelectorAll("img, picture, svg, canvas, video, input[type=image], object, embed")) {
      imagery.push(el.tagName);
    }
    for (const el of doc.body.querySelectorAll("*")) {
      const bg = win.getComputedStyle(el).backgroundImage;
      if (bg && bg !== "none") imagery.push(el.tagName + " background " + bg.slice(0, 40));
    }
    const cell = doc.querySelector("h1");
    const font = win.getComputedStyle(cell).fontSize + " " + win.getComputedStyle(cell).fontFamily;
    const tofu = new Set([pixels("\\u0378", font), pixels("\\u0379", font)]);
    const missing = [];
    for (const ch of new Set(Array.from(doc.body.innerText))) {
      if (/\\s/.test(ch)) continue;
      if (tofu.has(pixels(ch, font))) missing.push(ch);
    }
    // The main button: the first link drawn as a button (a coloured cell with rounded corners).
    let button = null;
    for (const a of doc.querySelectorAll("td[bgcolor] > a")) {
      if ((a.parentElement.getAttribute("style") || "").includes("border-radius")) { button = a.parentElement; break; }
    }
    results.push({
      button_bottom: button ? button.getBoundingClientRect().bottom : null,
      button_text: button ? button.innerText.trim() : null,
      height: root.scrollHeight,
      name: page.name, width: page.width, inner: win.innerWidth, scroll: root.scrollWidth,
      wide: wide.slice(0, 5), imagery, missing, title: cell.innerText,
      text: doc.body.innerText.length,
    });
  }
  document.getElementById("probe").textContent = JSON.stringify(results);
});
</script>
</body></html>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def need_chromium() -> str:
    binary = chromium()
    if binary is None:
        reason = "chromium is not installed (apt-get install chromium fonts-noto-cjk)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the layout test")
        pytest.skip(reason)
    return binary


def run_chromium(binary: str, profile: Path, *args: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def pages() -> list[dict[str, object]]:
    """Each message from the sample context and as the pipeline made it (docs/messages/, which
    tests/test_render.py keeps current): real page wording and the sample's longest lines."""
    out: list[dict[str, object]] = []
    for template in Template:
        for locale in LOCALES:
            sample = render_preview(template, locale).html
            piped = (DOCS_MESSAGES / f"{locale}-{template.value}.html").read_text(encoding="utf-8")
            for width in WIDTHS:
                out.append({"name": f"{locale}-{template.value}", "width": width, "html": sample})
                out.append({"name": f"pipeline-{locale}-{template.value}", "width": width, "html": piped})
    # A stall judged by the route's history carries the lane's figure, in each stall wording.
    for locale in LOCALES:
        for stage in ("departed_origin", "customs_presented", "accepted"):
            late = dataclasses.replace(
                sample_context(Template.STALLED, locale),
                stage=stage,
                stall_is_normal=False,
                late_within_days=3,
            )
            html = Renderer().render(late).html
            for width in WIDTHS:
                out.append({"name": f"late-{locale}-stalled-{stage}", "width": width, "html": html})
    return out


def measure(work: Path, pages: list[dict[str, object]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Lay every page out in one Chromium run and return the harness's results by (name, width)."""
    binary = need_chromium()
    harness = work / "harness.html"
    # "</" inside a script would end it early; JSON lets it be written as "<\/".
    data = json.dumps(pages, ensure_ascii=False).replace("</", "<\\/")
    harness.write_text(HARNESS.replace("__PAGES__", data), encoding="utf-8")
    dom = run_chromium(
        binary,
        work / "profile",
        "--window-size=1280,1000",
        "--virtual-time-budget=30000",
        "--dump-dom",
        harness.as_uri(),
    )
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert probe, "the harness wrote no results"
    text = htmllib.unescape(probe.group(1))
    assert text != "pending", "the harness did not finish measuring"
    return {(r["name"], r["width"]): r for r in json.loads(text)}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], dict[str, Any]]:
    return measure(tmp_path_factory.mktemp("chromium"), pages())


CASES = [
    pytest.param(f"{source}{locale}-{t.value}", width, id=f"{source}{locale}-{t.value}-{width}")
    for source in ("", "pipeline-")
    for t in Template
    for locale in LOCALES
    for width in WIDTHS
] + [
    pytest.param(f"late-{locale}-stalled-{stage}", width, id=f"late-{locale}-stalled-{stage}-{width}")
    for locale in LOCALES
    for stage in ("departed_origin", "customs_presented", "accepted")
    for width in WIDTHS
]


@pytest.mark.parametrize(("name", "width"), CASES)
def test_message_fits_the_screen_needs_no_images_and_has_every_glyph(
    measured: dict[tuple[str, int], dict[str, Any]], name: str, width: int
) -> None:
    result = measured[name, width]
    assert result["inner"] == width, "the frame is not the width under test"
    assert result["scroll"] <= width, f"{name} overflows {width}px: {result['wide']}"
    assert not result["wide"], f"{name} has elements wider than {width}px: {result['wide']}"
    assert not result["imagery"], f"{name} needs images: {result['imagery']}"
    assert not result["missing"], f"{name} has characters no installed font can draw: {result['missing']}"
    assert result["title"], "no visible title"


# Above this, a phone of 375 px shows the button without scrolling (iPhone SE/mini viewports are
# 375 x 548-667 CSS px once the mail app's bars are drawn).
FOLD = 600


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f"{source}{locale}-{t.value}", id=f"{source}{locale}-{t.value}")
        for source in ("", "pipeline-")
        for t in Template
        if t is not Template.OPERATOR_DIGEST
        for locale in LOCALES
    ],
)
def test_the_main_button_is_above_the_fold_at_375px(
    measured: dict[tuple[str, int], dict[str, Any]], name: str
) -> None:
    result = measured[name, 375]
    assert result["button_bottom"] is not None, f"{name} has no button"
    assert result["button_bottom"] <= FOLD, (
        f"{name}: the main button ({result['button_text']!r}) ends {result['button_bottom']:.0f}px down"
    )


# How shops write their reply address ([notifications] reply_to in config.example.toml): a
# display name and the address. Emails show the name and link the bare address.
DISPLAY_NAME_REPLY_TO = "Sakura Stationery Support <support@sakura.example>"
NARROW = (320, 375)


def display_name_messages() -> dict[str, str]:
    renderer = Renderer()
    return {
        f"{locale}-{t.value}": renderer.render(
            dataclasses.replace(sample_context(t, locale), reply_to=DISPLAY_NAME_REPLY_TO)
        ).html
        for t in Template
        for locale in LOCALES
    }


@pytest.fixture(scope="module")
def measured_display_name(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], dict[str, Any]]:
    work = tmp_path_factory.mktemp("chromium-reply-to")
    return measure(
        work,
        [{"name": n, "width": w, "html": h} for n, h in display_name_messages().items() for w in NARROW],
    )


@pytest.mark.parametrize(
    ("name", "width"),
    [
        pytest.param(f"{locale}-{t.value}", width, id=f"{locale}-{t.value}-{width}")
        for t in Template
        for locale in LOCALES
        for width in NARROW
    ],
)
def test_a_reply_address_with_a_display_name_fits_narrow_phones(
    measured_display_name: dict[tuple[str, int], dict[str, Any]], name: str, width: int
) -> None:
    result = measured_display_name[name, width]
    assert result["inner"] == width, "the frame is not the width under test"
    assert result["scroll"] <= width, f"{name} overflows {width}px: {result['wide']}"
    assert not result["wide"], f"{name} has elements wider than {width}px: {result['wide']}"


def test_mailto_links_carry_the_bare_address_and_text_shows_the_name() -> None:
    for name, html in display_name_messages().items():
        hrefs = re.findall(r'href="(mailto:[^"]*)"', html)
        assert all(h == "mailto:support@sakura.example" for h in hrefs), f"{name}: {hrefs}"
        assert "&lt;support@sakura.example&gt;" not in html, name
        if name.endswith(("-returning", "-returned")):
            assert len(hrefs) >= 2, f"{name}: the Email us button and the footer link: {hrefs}"
            assert "Sakura Stationery Support</a>" in html, name


def test_a_missing_glyph_and_an_overflow_are_caught(tmp_path: Path) -> None:
    """The probe itself: a page with an unassigned character and a fixed 700px table must fail."""
    binary = need_chromium()
    broken = (
        '<!DOCTYPE html><html><body><h1 style="font-size:22px">Title \U000e01ef\u0378</h1>'
        '<table width="700"><tr><td>wide</td></tr></table><img src="data:," alt=""></body></html>'
    )
    data = json.dumps([{"name": "broken", "width": 375, "html": broken}]).replace("</", "<\\/")
    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS.replace("__PAGES__", data), encoding="utf-8")
    dom = run_chromium(
        binary,
        tmp_path / "profile",
        "--window-size=1280,1000",
        "--virtual-time-budget=10000",
        "--dump-dom",
        harness.as_uri(),
    )
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert probe
    (result,) = json.loads(htmllib.unescape(probe.group(1)))
    assert result["scroll"] > 375
    assert result["imagery"] == ["IMG"]
    assert "\u0378" in result["missing"]


@pytest.mark.timeout(900)
def test_screenshots_when_asked(tmp_path: Path) -> None:
    """NOTIFIER_SCREENSHOTS=DIR writes PNGs of every message at both widths there, for a look."""
    folder = os.environ.get("NOTIFIER_SCREENSHOTS")
    if not folder:
        pytest.skip("set NOTIFIER_SCREENSHOTS=DIR to write screenshots")
    binary = need_chromium()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for template in Template:
        for locale in LOCALES:
            page = tmp_path / f"{locale}-{template.value}.html"
            page.write_text(render_preview(template, locale).html, encoding="utf-8")
            for width in WIDTHS:
                png = out / f"{locale}-{template.value}-{width}.png"
                run_chromium(
                    binary,
                    tmp_path / "profile",
                    f"--window-size={width},1800",
                    f"--screenshot={png}",
                    page.as_uri(),
                    timeout=60,
                )
                assert png.stat().st_size > 0


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_chromium_ci_fails_and_elsewhere_it_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="chromium is not installed"):
        need_chromium()
