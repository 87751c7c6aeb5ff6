// Browser client for the notification service.
//
// Connects to Socket.IO on the page's own origin, keeps a live list of the
// user's notifications and lets the user mark them read or delete them
// through the REST API. All user-supplied text is put in the DOM with
// textContent only, never parsed as HTML.
//
// Token lifetime: the page reads the token's `exp` (without verifying it) to
// show when it expires and to warn shortly before. A new token for the same
// user, entered while connected, is handed to the live socket with
// `refresh_token` instead of reconnecting. When the server ends the session
// with `token_expired`, the page asks for a new token and does not reconnect.
"use strict";

(function () {
  const TOKEN_KEY = "notifications.accessToken";
  // Socket.IO event names: a copy of app/protocol.py, compared with it by tests/test_protocol.py.
  const EVENTS = Object.freeze({
    NEW_NOTIFICATION: "new_notification",
    PENDING_NOTIFICATIONS: "pending_notifications",
    TOKEN_EXPIRED: "token_expired",
    REFRESH_TOKEN: "refresh_token",
  });
  // Ranks let a merge never move a notification backwards (see merge()).
  const STATUS_RANK = { PENDING: 0, DELIVERED: 1, READ: 2 };
  const EXPIRY_WARNING_S = 60;     // warn this long before the token expires
  const REFRESH_TIMEOUT_MS = 10000; // how long to wait for the answer to refresh_token
  // The server closes the socket right after token_expired; should that close
  // not come, the page closes the socket itself after this long.
  const EXPIRED_CLOSE_GRACE_MS = 3000;

  const el = {
    form: document.getElementById("connect-form"),
    token: document.getElementById("token"),
    connect: document.getElementById("connect"),
    disconnect: document.getElementById("disconnect"),
    state: document.getElementById("state"),
    stateDetail: document.getElementById("state-detail"),
    error: document.getElementById("error"),
    expiry: document.getElementById("token-expiry"),
    list: document.getElementById("notifications"),
    empty: document.getElementById("empty"),
  };

  let socket = null;           // the current Socket.IO connection, if any
  let sessionToken = null;     // token of the current connection, used for REST calls
  let sessionSub = null;       // its `sub` claim, when readable
  let sessionExp = null;       // its `exp` claim (unix seconds), when readable
  let expiryTimer = null;      // interval that keeps the expiry line current
  let refreshing = false;      // a refresh_token request is waiting for its answer
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

  // The claims of a JWT, read without verifying the signature (only the
  // server can do that). Null when the token is not a readable JWT.
  function decodeClaims(token) {
    const parts = String(token).split(".");
    if (parts.length !== 3) return null;
    try {
      let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      b64 += "=".repeat((4 - (b64.length % 4)) % 4);
      const binary = atob(b64);
      const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function claimSub(claims) {
    return claims && typeof claims.sub === "string" ? claims.sub : null;
  }

  function claimExp(claims) {
    return claims && typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp : null;
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

  // ---- token expiry ----------------------------------------------------------

  // "4 min", "1 h 5 min", "42 s": how long until the token expires.
  function formatRemaining(seconds) {
    if (seconds < 60) return seconds + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    const hours = Math.floor(minutes / 60);
    return hours + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "");
  }

  function renderExpiry() {
    if (sessionExp === null || !socket) {
      el.expiry.hidden = true;
      el.expiry.textContent = "";
      delete el.expiry.dataset.level;
      return;
    }
    const remaining = Math.ceil(sessionExp - Date.now() / 1000);
    const at = new Date(sessionExp * 1000).toLocaleTimeString();
    let text;
    let level;
    if (remaining <= 0) {
      text = "The token expired at " + at + ": enter a new token to stay connected.";
      level = "warn";
    } else if (remaining <= EXPIRY_WARNING_S) {
      text =
        "The token expires in " + formatRemaining(remaining) + " (at " + at + "): " +
        "enter a new token and press Connect to stay connected.";
      level = "warn";
    } else {
      text = "Token expires in " + formatRemaining(remaining) + " (at " + at + ").";
      level = "ok";
    }
    el.expiry.textContent = text;
    el.expiry.dataset.level = level;
    el.expiry.hidden = false;
  }

  function startExpiryClock() {
    stopExpiryClock();
    renderExpiry();
    if (sessionExp !== null) expiryTimer = setInterval(renderExpiry, 1000);
  }

  function stopExpiryClock() {
    if (expiryTimer !== null) clearInterval(expiryTimer);
    expiryTimer = null;
    el.expiry.hidden = true;
    el.expiry.textContent = "";
    delete el.expiry.dataset.level;
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
    const claims = decodeClaims(token);
    sessionToken = token;
    sessionSub = claimSub(claims);
    sessionExp = claimExp(claims);

    // Browsers cannot set headers on a WebSocket, so the token goes in the
    // Socket.IO auth payload. No URL: connect to this page's own origin.
    // `ack: true`: an acknowledging client (at least once); every notification event
    // is acknowledged below once it is in the list.
    const s = io({ auth: { token, ack: true }, transports: ["websocket", "polling"] });
    socket = s;
    setState("connecting");

    // Every handler checks it still belongs to the current socket, so late
    // events from a socket that was replaced are ignored.
    s.on("connect", () => {
      if (s !== socket) return;
      setState("connected");
      startExpiryClock();
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
      // After token_expired the socket is no longer the current one, so the
      // close that follows leaves the "expired" message in place.
      if (s !== socket) return;
      // s.active: socket.io will reconnect by itself (e.g. the network dropped).
      if (s.active) {
        setState("connecting", reason);
      } else {
        stopExpiryClock();
        setState("disconnected", reason === "io server disconnect" ? "closed by the server" : "");
      }
    });
    // The server is about to close the socket because the token expired. The
    // session is over: no reconnection with this token, by socket.io or by us.
    s.on(EVENTS.TOKEN_EXPIRED, () => {
      if (s !== socket) return;
      s.io.reconnection(false);
      socket = null;
      sessionToken = null;
      refreshing = false;
      el.connect.disabled = false;
      stopExpiryClock();
      setState("expired", "session ended: token expired");
      showError("The session ended because the access token expired. Enter a new token and press Connect.");
      el.token.focus();
      el.token.select();
      setTimeout(() => {
        if (s.connected) s.disconnect();
      }, EXPIRED_CLOSE_GRACE_MS);
    });
    // The server asks for an acknowledgement: what a socket was sent but never
    // acknowledged is sent again after a reconnect (merge() drops the duplicates).
    s.on(EVENTS.NEW_NOTIFICATION, (n, ack) => {
      if (s === socket) merge([n]);
      if (typeof ack === "function") ack();
    });
    s.on(EVENTS.PENDING_NOTIFICATIONS, (list, ack) => {
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
    refreshing = false;
    el.connect.disabled = false;
    stopExpiryClock();
    setState("disconnected");
  }

  // Hands a new token for the same user to the live socket. Accepted: the
  // page uses and stores it from now on. Refused (or no answer): the session
  // goes on unchanged with the current token.
  function refresh(token) {
    const s = socket;
    const previousDetail = el.stateDetail.textContent;
    refreshing = true;
    el.connect.disabled = true;
    setState("connected", "sending the new token…");
    s.timeout(REFRESH_TIMEOUT_MS).emit(EVENTS.REFRESH_TOKEN, { token }, (err, answer) => {
      if (s !== socket || !refreshing) return; // the session ended or changed meanwhile
      refreshing = false;
      el.connect.disabled = false;
      if (!err && answer && answer.ok === true) {
        const exp = typeof answer.exp === "number" && Number.isFinite(answer.exp) ? answer.exp : null;
        sessionToken = token;
        sessionExp = exp !== null ? exp : claimExp(decodeClaims(token));
        s.auth = { token, ack: true }; // an automatic reconnection must use the new token too
        saveToken(token);
        setState("connected", "token refreshed");
        startExpiryClock();
        return;
      }
      if (err) {
        showError("The server did not answer the token refresh; the session goes on with the current token.");
      } else {
        const code = answer && typeof answer.error === "string" && answer.error ? answer.error : "refused";
        const why = answer && typeof answer.message === "string" && answer.message ? ": " + answer.message : "";
        showError(
          "The new token was not accepted (" + code + why + "); the session goes on with the current token."
        );
      }
      if (el.state.dataset.state === "connected") el.stateDetail.textContent = previousDetail;
    });
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
    clearError();
    // Same user, live socket: refresh the token in place instead of reconnecting.
    const sub = claimSub(decodeClaims(token));
    if (socket && socket.connected && sessionSub !== null && sub === sessionSub) {
      if (!refreshing) refresh(token);
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
