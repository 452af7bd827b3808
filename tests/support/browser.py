"""Debian's Chromium as the real browser for e2e tests and the dashboard benchmark.

`npx playwright install` cannot download browsers here; Playwright drives /usr/bin/chromium with
the flags that keep it off the network (background services would otherwise try to connect).
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
