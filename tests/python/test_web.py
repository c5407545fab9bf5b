"""The chat page in a real browser: Debian's Chromium (/usr/bin/chromium,
or CHROMIUM) driven headless through Playwright's Python client (no browser
download), against the real launcher with the offline model. A person's
first steps: open the printed link, chat, see the answer stream in and the
task appear, complete it from the list, reload and reopen the conversation,
and see what a bad token means. SCREENSHOT=path saves the page as shown."""

import json
import os
import re
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright
from support import Launcher

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def launcher():
    running = Launcher(RATE_LIMIT="1000")
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def printed_link(launcher) -> str:
    match = re.search(r"^  (http://\S+/#token=\S+)$", launcher.banner(), re.MULTILINE)
    assert match, launcher.banner()
    return match.group(1)


def watch(page) -> list:
    """Collects the page's script errors and CSP refusals."""
    problems = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    return problems


def tasks_of(launcher, user: str) -> list:
    request = urllib.request.Request(f"{launcher.base}/api/{user}/tasks",
                                     headers={"Authorization": f"Bearer {launcher.token(user)}"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["tasks"]


def test_a_first_visit_chats_completes_and_reopens(launcher, browser):
    page = browser.new_page()
    problems = watch(page)
    page.goto(printed_link(launcher))
    expect(page.get_by_text("Signed in as demo")).to_be_visible()
    assert "#token" not in page.url, "the token leaves the address bar"
    expect(page.get_by_label("Token")).to_be_hidden()

    page.get_by_label("Message").fill("add buy milk")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#messages .tool").first).to_contain_text("add_task")
    expect(page.locator("#messages .assistant").last).to_contain_text('Added "buy milk"')
    expect(page.locator("#task-list")).to_contain_text("buy milk")

    done = page.get_by_role("checkbox", name="Completed: buy milk")
    done.check()
    expect(page.locator("#task-list li.done")).to_contain_text("buy milk")
    assert [t["completed"] for t in tasks_of(launcher, "demo") if t["title"] == "buy milk"] == [True]

    # Keyboard only: a task named by its title, completed through the chat.
    page.get_by_label("Message").fill("add call the dentist")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#task-list")).to_contain_text("call the dentist")
    page.get_by_label("Message").fill("I finished the dentist task")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#messages .assistant").last).to_contain_text("as completed")

    page.reload()
    expect(page.get_by_text("Signed in as demo")).to_be_visible()
    conversation = page.locator("#conversation-list button").first
    expect(conversation).to_be_visible()
    conversation.click()
    expect(page.locator("#messages .user").first).to_have_text("add buy milk")
    expect(page.locator("#messages")).to_contain_text("I finished the dentist task")

    # Rename and delete straight from the list.
    page.get_by_role("button", name="Rename buy milk").click()
    page.get_by_label("New title for buy milk").fill("buy oat milk")
    page.get_by_label("New title for buy milk").press("Enter")
    expect(page.locator("#task-list")).to_contain_text("buy oat milk")
    page.get_by_label("New task").fill("water the plants")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#task-list")).to_contain_text("water the plants")
    page.get_by_role("button", name="Delete water the plants").click()
    expect(page.locator("#task-list")).not_to_contain_text("water the plants")
    assert sorted(t["title"] for t in tasks_of(launcher, "demo")) == ["buy oat milk", "call the dentist"]

    if os.environ.get("SCREENSHOT"):
        page.set_viewport_size({"width": 1200, "height": 720})
        page.screenshot(path=os.environ["SCREENSHOT"])
    page.get_by_role("button", name="Change token").click()
    expect(page.get_by_label("Token")).to_be_focused()
    assert problems == []
    page.close()


def test_a_bad_token_is_explained(launcher, browser):
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{launcher.base}/#token=not-a-token")
    expect(page.get_by_role("alert")).to_contain_text("no user")
    page.get_by_label("Token").fill("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.forged")
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_role("alert")).to_contain_text("Not signed in")
    expect(page.get_by_label("Token")).to_be_focused()
    assert problems == []
    page.close()


def test_the_page_fits_a_phone_and_sends_a_strict_policy(launcher, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    problems = watch(page)
    response = page.goto(printed_link(launcher))
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    expect(page.get_by_label("Message")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    page.get_by_label("Message").fill("show my tasks")
    page.get_by_role("button", name="Send").tap()
    expect(page.locator("#messages .assistant").last).to_contain_text("Your tasks")
    assert problems == []
    context.close()


def test_a_spent_rate_budget_is_explained(browser):
    # A budget of two: the task list at load, then an added task; the list's
    # refresh after it is the third request.
    running = Launcher(RATE_LIMIT="2")
    try:
        page = browser.new_page()
        problems = watch(page)
        page.goto(printed_link(running))
        expect(page.locator("#task-list")).to_contain_text("No tasks here yet")
        page.get_by_label("New task").fill("one too many")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("Too many requests: wait")
        assert problems == []
        page.close()
    finally:
        running.close()


def test_past_conversations_come_a_page_at_a_time(launcher, browser):
    token = launcher.token("pager")
    for n in range(51):
        request = urllib.request.Request(
            f"{launcher.base}/api/pager/chat", data=json.dumps({"message": f"add errand {n}"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        urllib.request.urlopen(request).close()
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{launcher.base}/#token={token}")
    conversations = page.locator("#conversation-list li:not(.more) button")
    expect(conversations).to_have_count(50)
    page.get_by_role("button", name="More conversations").click()
    expect(conversations).to_have_count(51)
    expect(page.get_by_role("button", name="More conversations")).to_have_count(0)
    expect(conversations.last).to_have_text("add errand 0")
    expect(page.locator("#task-list li")).to_have_count(51)
    assert problems == []
    page.close()
