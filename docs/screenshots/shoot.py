"""Screenshots of a Snakemake report (headless Chromium via Playwright): the landing page, each result category,
and each entry of a category opened with its eye button (.tex / .csv entries after the first are skipped).

Usage (not a dependency of attnrank; needs `pip install playwright` and Debian's chromium at /usr/bin/chromium):
    python docs/screenshots/shoot.py report.html docs/screenshots
"""
import re, sys
from pathlib import Path
from playwright.sync_api import sync_playwright

report, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
    pg = b.new_page(viewport={"width": 1600, "height": 1100})
    pg.goto(report.as_uri()); pg.wait_for_timeout(2000)
    pg.screenshot(path=str(out / "00_landing.png"))
    for ci, cat in enumerate(["Tables", "Effectiveness", "Cost", "Heads", "Layers"]):
        pg.goto(report.as_uri()); pg.wait_for_timeout(1500)
        pg.get_by_text(cat, exact=True).first.click(); pg.wait_for_timeout(800)
        rows = pg.locator("tr:has(a[iconname=eye])")
        names = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
        for ri, name in enumerate(names):
            if name.endswith((".tex", ".csv")) and ri > 0:
                continue
            pg.goto(report.as_uri()); pg.wait_for_timeout(1200)
            pg.get_by_text(cat, exact=True).first.click(); pg.wait_for_timeout(600)
            pg.locator(f"tr:has(td:text-is('{name}')) a[iconname=eye]").first.click(); pg.wait_for_timeout(1500)
            tag = re.sub(r"[^A-Za-z0-9]+", "_", name.replace("results/", ""))
            pg.screenshot(path=str(out / f"{ci+1}{ri}_{tag}.png"))
    b.close()
