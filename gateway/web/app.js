// taskagent's chat page: the conversation streamed from
// POST /api/{user}/chat/stream, the task list from the REST task API, past
// conversations to reopen. The token lives in this browser's localStorage
// only; a `#token=...` fragment (never sent to a server) fills it.
"use strict";

const TOKEN_KEY = "taskagent.token";
const $ = (id) => document.getElementById(id);
const state = { token: null, user: null, conversation: null, busy: false };

// ---- the token and its user ------------------------------------------------

function tokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]).trim();
}

/** The user a JWT names (`sub`, else `id` or `user_id`), or null. */
function subjectOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    const subject = claims.sub ?? claims.id ?? claims.user_id;
    return subject === undefined || subject === null || subject === "" ? null : String(subject);
  } catch {
    return null;
  }
}

function useToken(token) {
  state.token = token || null;
  state.user = token ? subjectOf(token) : null;
  state.conversation = null;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("who").textContent = state.user ? `Signed in as ${state.user}` : "";
  $("token-form").classList.toggle("signed-in", Boolean(state.user));
  clearMessages();
  if (!state.token) {
    notice("Paste a token to start: `taskagent token --user ID` makes one, and `cargo run` prints a link with it.");
    askForToken();
    return;
  }
  if (!state.user) {
    notice("This token names no user (no sub claim): paste another one.");
    askForToken();
    return;
  }
  clearNotice();
  hint("Ask me to manage your tasks: \"add buy milk\", \"show my tasks\", \"complete buy milk\".");
  refresh(loadTasks(), loadConversations());
}

// ---- calling the gateway ---------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What a person should read for an error answer. */
function explain(status, detail, retryAfter) {
  const wait = retryAfter ? `${retryAfter} second${retryAfter === "1" ? "" : "s"}` : "a few seconds";
  switch (status) {
    case 401:
      return "Not signed in: the token is missing, expired or not valid. Paste a new one (`taskagent token --user ID`).";
    case 403:
      return "This token belongs to another user: the server refused to act for it.";
    case 429:
      return `Too many requests: wait ${wait} and try again.`;
    case 503:
      return `The service is unavailable for now${detail ? ` (${detail})` : ""}. Try again in ${wait}.`;
    case 504:
      return `The agent took too long: ${detail || "timed out"}.`;
    default:
      return detail || `The request failed (HTTP ${status}).`;
  }
}

async function call(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached: is taskagent running?");
  }
  if (!response.ok) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch {
      // Not JSON: the status says enough.
    }
    throw new ApiError(response.status, explain(response.status, detail, response.headers.get("Retry-After")));
  }
  return response;
}

const api = (path) => `/api/${encodeURIComponent(state.user)}${path}`;

/** Runs the calls; shows the first failure (and asks for a token on 401). */
async function refresh(...calls) {
  const results = await Promise.allSettled(calls);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) fail(failed.reason);
}

function fail(error) {
  notice(error.message || String(error));
  if (error.status === 401) askForToken();
}

function askForToken() {
  $("token-form").classList.remove("signed-in");
  $("token").focus();
}

function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
}

function clearNotice() {
  $("notice").hidden = true;
  $("notice").textContent = "";
}

const requestKey = () =>
  globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

// ---- tasks -----------------------------------------------------------------

/**
 * Fills `list` from a paged listing at `url` (its items under `key`): the
 * first page, then a "More" button while there are more. The list is
 * replaced only once the first page has arrived, so overlapping refreshes
 * never mix.
 */
async function fillPaged(list, url, key, render, empty, more) {
  const next = async (token) => {
    const page = await (await call("GET", `${url}&page_token=${encodeURIComponent(token)}`)).json();
    if (token === "") list.replaceChildren();
    list.querySelector(".more")?.remove();
    for (const item of page[key]) list.append(render(item));
    if (list.children.length === 0) {
      const none = document.createElement("li");
      none.className = "empty";
      none.textContent = empty;
      list.append(none);
    }
    if (page.next_page_token) {
      const item = document.createElement("li");
      item.className = "more";
      item.append(button("More", more, () => refresh(next(page.next_page_token))));
      list.append(item);
    }
  };
  await next("");
}

async function loadTasks() {
  if (!state.user) return;
  const status = $("task-filter").value;
  await fillPaged($("task-list"), api(`/tasks?status=${status}&page_size=500`), "tasks", taskItem,
    "No tasks here yet.", "More tasks");
}

function taskItem(task) {
  const item = document.createElement("li");
  item.dataset.id = task.id;
  item.classList.toggle("done", task.completed);
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = task.completed;
  box.setAttribute("aria-label", `Completed: ${task.title}`);
  box.addEventListener("change", () =>
    refresh(call("PATCH", api(`/tasks/${task.id}/complete`)).then(loadTasks)),
  );
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = task.title;
  if (task.description) title.title = task.description;
  const rename = button("Rename", `Rename ${task.title}`, () => startRename(item, title, task));
  const remove = button("Delete", `Delete ${task.title}`, () =>
    refresh(call("DELETE", api(`/tasks/${task.id}`)).then(loadTasks)),
  );
  item.append(box, title, rename, remove);
  return item;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "quiet";
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function startRename(item, title, task) {
  const input = document.createElement("input");
  input.className = "rename";
  input.value = task.title;
  input.maxLength = 200;
  input.setAttribute("aria-label", `New title for ${task.title}`);
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    if (save && value && value !== task.title) {
      refresh(call("PUT", api(`/tasks/${task.id}`), { title: value }).then(loadTasks));
    } else {
      input.replaceWith(title);
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  title.replaceWith(input);
  input.focus();
  input.select();
}

// ---- conversations ---------------------------------------------------------

async function loadConversations() {
  if (!state.user) return;
  await fillPaged($("conversation-list"), api("/conversations?page_size=50"), "conversations", conversationItem,
    "None yet.", "More conversations");
}

function conversationItem(conversation) {
  const item = document.createElement("li");
  const open = button(conversation.title || `Conversation ${conversation.id}`, null, () =>
    refresh(openConversation(conversation.id)),
  );
  open.title = conversation.updated_at ? new Date(conversation.updated_at).toLocaleString() : "";
  open.dataset.id = conversation.id;
  if (conversation.id === state.conversation) open.setAttribute("aria-current", "true");
  item.append(open);
  return item;
}

async function openConversation(id) {
  const page = await (await call("GET", api(`/conversations/${id}/messages?page_size=200`))).json();
  state.conversation = id;
  clearMessages();
  const calls = new Map();
  for (const message of page.messages) {
    if (message.role === "user") say("user", message.content);
    else if (message.role === "assistant") {
      for (const c of message.tool_calls) calls.set(c.id, [c.tool, say("tool", started(c.tool, c.args))]);
      if (message.content) say("assistant", message.content);
    } else if (message.role === "tool") {
      const [tool, line] = calls.get(message.tool_call_id) ?? ["tool", say("tool", "")];
      let result = message.content;
      try {
        result = JSON.parse(message.content);
      } catch {
        // Shown as it is.
      }
      line.textContent = finished(tool, result);
    } else if (message.role === "error") say("error", message.content);
  }
  markCurrent(id);
  $("message").focus();
}

function markCurrent(id) {
  for (const b of $("conversation-list").querySelectorAll("button")) {
    if (Number(b.dataset.id) === id) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

// ---- the chat --------------------------------------------------------------

function clearMessages() {
  $("messages").replaceChildren();
}

function say(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function hint(text) {
  say("hint", text);
}

async function send(text) {
  state.busy = true;
  $("send").disabled = true;
  say("user", text);
  const tools = new Map();
  let answer = null;
  try {
    const body = { message: text };
    if (state.conversation !== null) body.conversation_id = state.conversation;
    const response = await call("POST", api("/chat/stream"), body, { "Idempotency-Key": requestKey() });
    for await (const [event, data] of serverEvents(response)) {
      switch (event) {
        case "conversation":
          state.conversation = data.conversation_id;
          break;
        case "tool_call_started":
          tools.set(data.id, say("tool", started(data.tool, data.args)));
          break;
        case "tool_call_finished": {
          const line = tools.get(data.id) ?? say("tool", "");
          line.textContent = finished(data.tool, data.result);
          refresh(loadTasks());
          break;
        }
        case "text":
          answer ??= say("assistant", "");
          answer.textContent += data.text;
          break;
        case "done":
          if (!answer) say("assistant", data.response);
          break;
        case "error":
          say("error", explain(data.status, data.detail, null));
          break;
      }
    }
  } catch (error) {
    say("error", error.message);
    fail(error);
  } finally {
    state.busy = false;
    $("send").disabled = false;
    refresh(loadTasks(), loadConversations());
  }
}

/** A tool call's line while it runs, and once it has its result. */
const started = (tool, args) => `⚙ ${tool} ${JSON.stringify(args)}`;
const finished = (tool, result) => `✓ ${tool}: ${describe(result)}`;

function describe(result) {
  if (result && typeof result === "object") {
    if (result.status === "error") return `error: ${result.error}`;
    if (Array.isArray(result.tasks)) return `${result.tasks.length} task${result.tasks.length === 1 ? "" : "s"}`;
    if (result.title) return `${result.status} "${result.title}"`;
  }
  return JSON.stringify(result);
}

/** The events of a server-sent event stream, as [name, parsed JSON data]. */
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue; // a keep-alive comment
      try {
        yield [name, JSON.parse(data.join("\n"))];
      } catch {
        yield [name, {}];
      }
    }
  }
}

// ---- wiring ----------------------------------------------------------------

$("change-token").addEventListener("click", askForToken);

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken($("token").value.trim());
});

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || state.busy) return;
  if (!state.user) {
    fail(new ApiError(401, explain(401)));
    return;
  }
  $("message").value = "";
  send(text);
});

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});

$("task-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const title = $("new-task").value.trim();
  if (!title || !state.user) return;
  refresh(
    call("POST", api("/tasks"), { title }, { "Idempotency-Key": requestKey().slice(0, 128) }).then(() => {
      $("new-task").value = "";
      return loadTasks();
    }),
  );
});

$("task-filter").addEventListener("change", () => refresh(loadTasks()));

$("new-conversation").addEventListener("click", () => {
  state.conversation = null;
  clearMessages();
  hint("A new conversation: say what you need.");
  markCurrent(null);
  $("message").focus();
});

useToken(tokenFromFragment() ?? localStorage.getItem(TOKEN_KEY));
