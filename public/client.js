// Browser client for the notification service.
//
// Connects to Socket.IO on the page's own origin, keeps a live list of the
// user's notifications and lets the user mark them read or delete them
// through the REST API. All user-supplied text is put in the DOM with
// textContent only, never parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "notifications.accessToken";
  // Ranks let a merge never move a notification backwards (see merge()).
  const STATUS_RANK = { PENDING: 0, DELIVERED: 1, READ: 2 };

  const el = {
    form: document.getElementById("connect-form"),
    token: document.getElementById("token"),
    connect: document.getElementById("connect"),
    disconnect: document.getElementById("disconnect"),
    state: document.getElementById("state"),
    stateDetail: document.getElementById("state-detail"),
    error: document.getElementById("error"),
    list: document.getElementById("notifications"),
    empty: document.getElementById("empty"),
  };

  let socket = null;           // the current Socket.IO connection, if any
  let sessionToken = null;     // token of the current connection, used for REST calls
  const items = new Map();     // notification id -> notification object

  // ---- small helpers -------------------------------------------------------

  function loadToken() {
    try {
      return localStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return ""; // storage may be disabled; the field simply starts empty
    }
  }

  function saveToken(token) {
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch (e) {
      /* not fatal: the token just won't be remembered */
    }
  }

  function setState(state, detail) {
    el.state.textContent = state;
    el.state.dataset.state = state;
    el.stateDetail.textContent = detail || "";
    el.disconnect.disabled = socket === null;
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.textContent = "";
    el.error.hidden = true;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }

  // Newest first. Date.parse keeps only milliseconds, so equal dates fall
  // back to comparing the ISO strings (same format, microsecond precision),
  // then the id, to keep the order stable.
  function newestFirst(a, b) {
    const diff = Date.parse(b.createdAt) - Date.parse(a.createdAt);
    if (diff) return diff;
    if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  }

  // ---- REST ----------------------------------------------------------------

  // Calls the API with the current session's token. Resolves to the parsed
  // JSON body (null for 204); rejects with an Error carrying the server's
  // human-readable message.
  async function api(method, path) {
    if (!sessionToken) throw new Error("Not connected: enter a token and connect first.");
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: "Bearer " + sessionToken, Accept: "application/json" },
      });
    } catch (e) {
      throw new Error("Network error: " + e.message);
    }
    if (response.status === 204) return null;
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      /* a non-JSON body (e.g. a proxy error page) */
    }
    if (!response.ok) {
      const message = body && body.message ? body.message : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return body;
  }

  // ---- the list --------------------------------------------------------------

  // Adds or updates notifications by id. A socket event and the history
  // request can race, so an older snapshot (e.g. PENDING from history) must
  // not overwrite a newer one (DELIVERED from the event, READ after a click).
  function merge(notifications) {
    for (const n of notifications) {
      if (!n || typeof n.id !== "string") continue;
      const known = items.get(n.id);
      const rank = (x) => STATUS_RANK[x.status] ?? -1;
      if (!known || rank(n) >= rank(known)) items.set(n.id, n);
    }
    render();
  }

  function render() {
    const sorted = Array.from(items.values()).sort(newestFirst);
    el.list.replaceChildren(...sorted.map(renderItem));
    el.empty.hidden = sorted.length > 0;
  }

  function renderItem(n) {
    const li = document.createElement("li");
    li.className = "notification";
    li.dataset.id = n.id;
    li.dataset.status = n.status;

    const message = document.createElement("p");
    message.className = "message";
    message.textContent = n.message;

    const meta = document.createElement("div");
    meta.className = "meta";

    const status = document.createElement("span");
    status.className = "status";
    status.textContent = n.status;

    const created = document.createElement("time");
    created.className = "created-at";
    created.dateTime = n.createdAt;
    created.textContent = formatTime(n.createdAt);
    created.title = n.createdAt;

    const markRead = document.createElement("button");
    markRead.type = "button";
    markRead.className = "mark-read";
    markRead.textContent = "Mark read";
    markRead.disabled = n.status === "READ";
    markRead.addEventListener("click", () => markAsRead(n.id, markRead));

    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => deleteNotification(n.id, remove));

    meta.append(status, created, markRead, remove);
    li.append(message, meta);
    return li;
  }

  async function markAsRead(id, button) {
    clearError();
    button.disabled = true;
    try {
      const updated = await api("PUT", "/v1/notifications/" + encodeURIComponent(id) + "/read");
      merge([updated]);
    } catch (e) {
      showError(e.message);
      button.disabled = false;
    }
  }

  async function deleteNotification(id, button) {
    clearError();
    button.disabled = true;
    try {
      await api("DELETE", "/v1/notifications/" + encodeURIComponent(id));
      items.delete(id);
      render();
    } catch (e) {
      showError(e.message);
      button.disabled = false;
    }
  }

  async function loadHistory() {
    try {
      const history = await api("GET", "/v1/notifications");
      if (Array.isArray(history)) merge(history);
    } catch (e) {
      showError("Could not load notifications: " + e.message);
    }
  }

  // ---- Socket.IO -----------------------------------------------------------

  function connect(token) {
    disconnect();
    clearError();
    items.clear();   // a new token may be another user: start from an empty list
    render();
    sessionToken = token;

    // Browsers cannot set headers on a WebSocket, so the token goes in the
    // Socket.IO auth payload. No URL: connect to this page's own origin.
    const s = io({ auth: { token }, transports: ["websocket", "polling"] });
    socket = s;
    setState("connecting");

    // Every handler checks it still belongs to the current socket, so late
    // events from a socket that was replaced are ignored.
    s.on("connect", () => {
      if (s !== socket) return;
      setState("connected");
      loadHistory();
    });
    s.on("connect_error", (err) => {
      if (s !== socket) return;
      // A refusal by the server (bad token) is final: socket.io does not
      // retry (s.active is false). Network errors are retried automatically.
      setState("error", err && err.message ? err.message : "connection failed");
    });
    s.io.on("reconnect_attempt", () => {
      if (s === socket) setState("connecting", el.stateDetail.textContent);
    });
    s.on("disconnect", (reason) => {
      if (s !== socket) return;
      // s.active: socket.io will reconnect by itself (e.g. the network dropped).
      if (s.active) setState("connecting", reason);
      else setState("disconnected", reason === "io server disconnect" ? "closed by the server" : "");
    });
    // The server asks for an acknowledgement: what a socket was sent but never
    // acknowledged is sent again after a reconnect (merge() drops the duplicates).
    s.on("new_notification", (n, ack) => {
      if (s === socket) merge([n]);
      if (typeof ack === "function") ack();
    });
    s.on("pending_notifications", (list, ack) => {
      if (s === socket && Array.isArray(list)) merge(list);
      if (typeof ack === "function") ack();
    });
  }

  function disconnect() {
    if (socket) {
      const s = socket;
      socket = null;
      s.disconnect();
    }
    setState("disconnected");
  }

  // ---- wiring ----------------------------------------------------------------

  el.token.value = loadToken();

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.token.value.trim();
    if (!token) {
      showError("Enter an access token first.");
      el.token.focus();
      return;
    }
    saveToken(token);
    connect(token);
  });

  el.disconnect.addEventListener("click", () => disconnect());

  if (typeof io !== "function") {
    setState("error", "socket.io client failed to load");
    el.connect.disabled = true;
  } else {
    setState("disconnected");
  }
  render();
})();
