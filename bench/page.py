"""The chat page's weight and its time to interactive on loopback, in
headless Chromium (Debian's, through Playwright), as a first visit: a fresh
browser context each run (nothing cached), the printed `#token=` link
opened, and the clock stopped once the page shows the user's task list (its
script loaded and run, the token read, the tasks fetched and drawn), read as
performance.now() since the navigation began.
Usage: python3 bench/page.py BASE_URL TOKEN [RUNS, default 20]."""

import statistics
import sys
import urllib.request

from playwright.sync_api import sync_playwright

base, token = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20

sizes = {}
for path in ["/", "/app.js", "/app.css"]:
    with urllib.request.urlopen(base + path) as answer:
        sizes[path] = len(answer.read())
print("page files: " + ", ".join(f"{p} {n:,} B" for p, n in sizes.items()) + f"; total {sum(sizes.values()):,} B")

interactive, dom = [], []
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    for _ in range(runs + 1):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/#token={token}", wait_until="commit")
        page.wait_for_selector("#task-list li")
        interactive.append(page.evaluate("performance.now()"))
        dom.append(page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
        context.close()
    browser.close()
# The first run also starts the browser's own machinery: left out.
interactive, dom = interactive[1:], dom[1:]
print(f"DOMContentLoaded: median {statistics.median(dom):.0f} ms, max {max(dom):.0f} ms ({runs} runs)")
print(f"interactive (task list drawn): median {statistics.median(interactive):.0f} ms, "
      f"p90 {sorted(interactive)[int(len(interactive) * 0.9) - 1]:.0f} ms, max {max(interactive):.0f} ms")
