// Browser client for the notification service.
//
// Connects to Socket.IO on the page's own origin, keeps a live list of the
// user's notifications and lets the user mark them read or delete them
// through the REST API. All user-supplied text is put in the DOM with
// textContent only, never parsed as HTML; a notification's `data.url` becomes a
// link only when it is an absolute http(s) URL.
//
// Inbox: the unread badge shows the count the server sends (`unread_count`,
// after connect and after every change); the events in between adjust it so
// that it never lags behind the list. Reads, deletes and "Mark all read" made
// on another tab or device arrive as events and are applied to the list.
//
// Token lifetime: the page reads the token's `exp` (without verifying it) to
// show when it expires and to warn shortly before. A new token for the same
// user, entered while connected, is handed to the live socket with
// `refresh_token` instead of reconnecting. When the server ends the session
// with `token_expired`, the page asks for a new token and does not reconnect.
//
// Categories and topics (contract v3): each item shows its category (`general`
// when the object has none) and its topic (when it has one). The Preferences
// panel lists every category seen this session, in a notification or in the
// muted list, with a toggle that PUTs the whole new muted list; the server's
// list (its answer, or `preferences_updated` from any tab of the user) is what
// the panel shows. The Topics panel lists the user's topics, each with a
// Leave button. Both are loaded on every connect.
"use strict";

(function () {
  const TOKEN_KEY = "notifications.accessToken";
  // Socket.IO event names: a copy of app/protocol.py, compared with it by tests/test_protocol.py.
  const EVENTS = Object.freeze({
    NEW_NOTIFICATION: "new_notification",
    PENDING_NOTIFICATIONS: "pending_notifications",
    TOKEN_EXPIRED: "token_expired",
    REFRESH_TOKEN: "refresh_token",
    UNREAD_COUNT: "unread_count",
    NOTIFICATION_UPDATED: "notification_updated",
    NOTIFICATION_DELETED: "notification_deleted",
    NOTIFICATIONS_READ_ALL: "notifications_read_all",
    PREFERENCES_UPDATED: "preferences_updated",
  });
  // Ranks let a merge never move a notification backwards (see merge()).
  const STATUS_RANK = { PENDING: 0, DELIVERED: 1, READ: 2 };
  // The only URL schemes a notification's `data.url` may link to.
  const LINK_PROTOCOLS = new Set(["http:", "https:"]);
  const EXPIRY_WARNING_S = 60;     // warn this long before the token expires
  const REFRESH_TIMEOUT_MS = 10000; // how long to wait for the answer to refresh_token
  // The server closes the socket right after token_expired; should that close
  // not come, the page closes the socket itself after this long.
  const EXPIRED_CLOSE_GRACE_MS = 3000;
  // The category of a notification object that has none (app/protocol.py DEFAULT_CATEGORY).
  const DEFAULT_CATEGORY = "general";

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
    badge: document.getElementById("unread-badge"),
    unreadCount: document.getElementById("unread-count"),
    markAllRead: document.getElementById("mark-all-read"),
    categories: document.getElementById("categories"),
    categoriesEmpty: document.getElementById("categories-empty"),
    preferencesStatus: document.getElementById("preferences-status"),
    topics: document.getElementById("topics"),
    topicsEmpty: document.getElementById("topics-empty"),
    topicsStatus: document.getElementById("topics-status"),
  };

  let socket = null;           // the current Socket.IO connection, if any
  let sessionToken = null;     // token of the current connection, used for REST calls
  let sessionSub = null;       // its `sub` claim, when readable
  let sessionExp = null;       // its `exp` claim (unix seconds), when readable
  let expiryTimer = null;      // interval that keeps the expiry line current
  let refreshing = false;      // a refresh_token request is waiting for its answer
  let session = 0;             // bumped by every connect(): answers for an earlier session are dropped
  let unread = null;           // the user's unread count (null until the server sends it)
  let readingAll = false;      // a "Mark all read" request is waiting for its answer
  const items = new Map();     // notification id -> notification object
  // Ids deleted during this session: a late snapshot (history, event) must not bring one back.
  const deleted = new Set();
  let muted = null;            // the server's muted categories, sorted (null until loaded)
  // Every category seen this session (in a notification or in the muted list): one
  // unmuted here stays listed, so the toggle can be undone.
  const categories = new Set();
  let savingPreferences = false; // a PUT /v1/preferences is waiting for its answer
  let preferenceEvents = 0;    // preferences_updated events received this session
  let topics = null;           // the user's topics, sorted (null until loaded)
  const leaving = new Set();   // topics whose DELETE is waiting for its answer

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

  const rank = (n) => STATUS_RANK[n.status] ?? -1;
  // Objects from a server without contract v3 have neither field: `general`, no topic.
  const categoryOf = (n) => (typeof n.category === "string" && n.category ? n.category : DEFAULT_CATEGORY);
  const topicOf = (n) => (typeof n.topic === "string" && n.topic ? n.topic : null);
  const strings = (list) => (Array.isArray(list) ? list.filter((x) => typeof x === "string") : null);
  const isUnread = (n) => n.status !== "READ";

  // Orders two ISO 8601 times of the server (same format, microseconds).
  function compareTimes(a, b) {
    const diff = Date.parse(a) - Date.parse(b);
    if (diff) return diff;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // The href of the link a notification's `data.url` makes, or null: only an
  // absolute http: or https: URL is linked (never javascript:, data:, ...).
  function safeLinkHref(data) {
    if (!data || typeof data !== "object" || Array.isArray(data) || typeof data.url !== "string") return null;
    let url;
    try {
      url = new URL(data.url);
    } catch (e) {
      return null;
    }
    return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
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

  // Calls the API with the current session's token, sending `body` (if any)
  // as JSON. Resolves to the parsed JSON body (null for 204); rejects with an
  // Error carrying the server's human-readable message.
  async function api(method, path, body) {
    if (!sessionToken) throw new Error("Not connected: enter a token and connect first.");
    const headers = { Authorization: "Bearer " + sessionToken, Accept: "application/json" };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Error("Network error: " + e.message);
    }
    if (response.status === 204) return null;
    let answer = null;
    try {
      answer = await response.json();
    } catch (e) {
      /* a non-JSON body (e.g. a proxy error page) */
    }
    if (!response.ok) {
      const message = answer && answer.message ? answer.message : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return answer;
  }

  // ---- the list --------------------------------------------------------------

  // Adds or updates notifications by id. A socket event and the history
  // request can race, so an older snapshot (e.g. PENDING from history) must
  // not overwrite a newer one (DELIVERED from the event, READ after a click),
  // and a deleted one never comes back.
  //
  // `count`: the change of an item from unread to read (or back) moves the
  // badge, and with `countNew` so does a new unread item. Not for the history:
  // it is a snapshot of an unknown moment, which the server's count (sent after
  // connect and after every change) already covers.
  function merge(notifications, { count = false, countNew = false } = {}) {
    const knownCategories = categories.size;
    for (const n of notifications) {
      if (!n || typeof n.id !== "string" || deleted.has(n.id)) continue;
      categories.add(categoryOf(n));
      const known = items.get(n.id);
      if (known && rank(n) < rank(known)) continue;
      items.set(n.id, n);
      if (known && count) addUnread(Number(isUnread(n)) - Number(isUnread(known)));
      else if (!known && countNew && isUnread(n)) addUnread(1);
    }
    render();
    if (categories.size !== knownCategories) renderPreferences();
  }

  // Takes a notification out of the list for good (deleted here or elsewhere).
  function forget(id, { count = false } = {}) {
    deleted.add(id);
    const known = items.get(id);
    if (!known) return;
    items.delete(id);
    if (count && isUnread(known)) addUnread(-1);
    render();
  }

  // Every unread item created by `readAt` becomes READ at `readAt` (what a
  // read-all did on the server); the badge is the caller's business.
  function applyReadAll(readAt) {
    if (typeof readAt !== "string") return;
    for (const [id, n] of items) {
      if (!isUnread(n)) continue;
      // Created after the read-all: it was not part of it.
      if (typeof n.createdAt === "string" && compareTimes(n.createdAt, readAt) > 0) continue;
      items.set(id, { ...n, status: "READ", readAt, deliveredAt: n.deliveredAt ?? readAt });
    }
    render();
  }

  // ---- unread badge ----------------------------------------------------------

  function setUnread(count) {
    unread = count;
    renderUnread();
  }

  // An event's effect on the count, until the server's next `unread_count`.
  function addUnread(delta) {
    if (unread === null || !delta) return;
    setUnread(Math.max(0, unread + delta));
  }

  function renderUnread() {
    const count = unread ?? 0;
    el.unreadCount.textContent = String(count);
    el.badge.dataset.count = String(count);
    el.badge.hidden = count === 0;
    // Nothing unread: nothing to mark. Before the server's first count, the list decides.
    const anyUnread = unread !== null ? unread > 0 : Array.from(items.values()).some(isUnread);
    el.markAllRead.disabled = !sessionToken || readingAll || !anyUnread;
  }

  function render() {
    const sorted = Array.from(items.values()).sort(newestFirst);
    el.list.replaceChildren(...sorted.map(renderItem));
    el.empty.hidden = sorted.length > 0;
    renderUnread();
  }

  // A label chip: "<kind> <name>", the kind for screen readers only.
  function tag(kind, name) {
    const span = document.createElement("span");
    span.className = "tag " + kind;
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = kind + " ";
    const value = document.createElement("span");
    value.className = "tag-name";
    value.textContent = name;
    span.append(label, value);
    return span;
  }

  function renderItem(n) {
    const li = document.createElement("li");
    li.className = "notification";
    li.dataset.id = n.id;
    li.dataset.status = n.status;
    const category = categoryOf(n);
    const topic = topicOf(n);
    li.dataset.category = category;
    if (topic !== null) li.dataset.topic = topic;

    const message = document.createElement("p");
    message.className = "message";
    message.textContent = n.message;
    li.append(message);

    const href = safeLinkHref(n.data);
    if (href !== null) {
      const link = document.createElement("a");
      link.className = "link";
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = href;
      li.append(link);
    }

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

    const parts = [tag("category", category)];
    if (topic !== null) parts.push(tag("topic", topic));
    parts.push(status, created);
    if (n.status === "READ" && typeof n.readAt === "string") {
      const readAt = document.createElement("time");
      readAt.className = "read-at";
      readAt.dateTime = n.readAt;
      readAt.textContent = "read " + formatTime(n.readAt);
      readAt.title = n.readAt;
      parts.push(readAt);
    }

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

    meta.append(...parts, markRead, remove);
    li.append(meta);
    return li;
  }

  async function markAsRead(id, button) {
    clearError();
    button.disabled = true;
    const current = session;
    try {
      const updated = await api("PUT", "/v1/notifications/" + encodeURIComponent(id) + "/read");
      if (current === session) merge([updated], { count: true });
    } catch (e) {
      if (current !== session) return;
      showError(e.message);
      button.disabled = false;
    }
  }

  async function deleteNotification(id, button) {
    clearError();
    button.disabled = true;
    const current = session;
    try {
      await api("DELETE", "/v1/notifications/" + encodeURIComponent(id));
      if (current === session) forget(id, { count: true });
    } catch (e) {
      if (current !== session) return;
      showError(e.message);
      button.disabled = false;
    }
  }

  // The badge is moved by the `notifications_read_all` event that every socket
  // of the user gets (this one included), not by the answer as well: once.
  async function markAllRead() {
    clearError();
    readingAll = true;
    renderUnread();
    const current = session;
    try {
      const answer = await api("POST", "/v1/notifications/read-all");
      if (current === session && answer) {
        applyReadAll(answer.readAt);
        // No live socket, so no event will come: the answer says how many it marked.
        if (!(socket && socket.connected) && Number.isInteger(answer.updated)) addUnread(-answer.updated);
      }
    } catch (e) {
      if (current === session) showError(e.message);
    } finally {
      if (current === session) {
        readingAll = false;
        renderUnread();
      }
    }
  }

  async function loadHistory() {
    const current = session;
    try {
      const history = await api("GET", "/v1/notifications");
      if (current === session && Array.isArray(history)) merge(history);
    } catch (e) {
      if (current === session) showError("Could not load notifications: " + e.message);
    }
  }

  // ---- preferences: muted categories ------------------------------------------

  // Puts `rows` (elements with data-key) in `list` in that order, creating none and
  // moving as few as possible: a focused button that stays in the list keeps its focus.
  function placeRows(list, rows) {
    const wanted = new Set(rows);
    for (const child of Array.from(list.children)) if (!wanted.has(child)) child.remove();
    rows.forEach((row, i) => {
      if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
    });
  }

  // A button that cannot be used now: `disabled` while there is no session, only
  // aria-disabled while a request waits (a disabled button loses the keyboard focus).
  function setUsable(button, { session: hasSession, busy }) {
    button.disabled = !hasSession;
    if (busy) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }

  function rowsByKey(list) {
    return new Map(Array.from(list.children, (row) => [row.dataset.key, row]));
  }

  // A row of a panel's list for one name (a category, a topic): the <li> and its label.
  function nameRow(kind, rowClass, name) {
    const li = document.createElement("li");
    li.className = rowClass;
    li.dataset.key = name;
    li.dataset[kind] = name;
    const label = document.createElement("span");
    label.className = kind + "-name";
    label.textContent = name;
    return { li, label };
  }

  function categoryRow(name) {
    const { li, label } = nameRow("category", "preference", name);
    const state = document.createElement("span");
    state.className = "preference-state";
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "mute-toggle";
    toggle.addEventListener("click", () => toggleMute(name));
    li.append(label, state, toggle);
    return li;
  }

  function renderPreferences() {
    const existing = rowsByKey(el.categories);
    const rows = Array.from(categories).sort().map((name) => {
      const li = existing.get(name) || categoryRow(name);
      const isMuted = muted !== null && muted.includes(name);
      li.dataset.muted = String(isMuted);
      li.querySelector(".preference-state").textContent = isMuted ? "muted" : "not muted";
      const toggle = li.querySelector(".mute-toggle");
      toggle.textContent = isMuted ? "Unmute" : "Mute";
      toggle.setAttribute("aria-label", (isMuted ? "Unmute " : "Mute ") + name);
      setUsable(toggle, { session: muted !== null && Boolean(sessionToken), busy: savingPreferences });
      return li;
    });
    placeRows(el.categories, rows);
    el.categoriesEmpty.hidden = rows.length > 0;
    el.categoriesEmpty.textContent =
      muted === null && !sessionToken
        ? "Connect to see your preferences."
        : "No categories yet: they appear here with your notifications.";
  }

  // The server's list (an answer or an event) becomes the panel's.
  function setMuted(list) {
    const names = strings(list);
    if (names === null) return;
    muted = names;
    for (const name of names) categories.add(name);
    el.preferencesStatus.textContent = names.length ? "Muted: " + names.join(", ") + "." : "Nothing muted.";
    renderPreferences();
  }

  // A preferences_updated received after a request was sent is at least as new as
  // its answer, or else is followed by the event of this very change (the server
  // sends it to every socket of the user, this one too): either way the events
  // leave the panel at the server's latest list, so the answer is not applied over them.
  async function loadPreferences() {
    const current = session;
    const events = preferenceEvents;
    try {
      const answer = await api("GET", "/v1/preferences");
      if (current === session && events === preferenceEvents) setMuted(answer && answer.muted);
    } catch (e) {
      if (current === session) showError("Could not load the preferences: " + e.message);
    }
  }

  async function toggleMute(name) {
    if (muted === null || savingPreferences) return;
    clearError();
    const wanted = muted.includes(name) ? muted.filter((c) => c !== name) : [...muted, name].sort();
    savingPreferences = true;
    renderPreferences();
    const current = session;
    const events = preferenceEvents;
    try {
      const answer = await api("PUT", "/v1/preferences", { muted: wanted });
      if (current === session && events === preferenceEvents) setMuted(answer && answer.muted);
    } catch (e) {
      if (current === session) showError("Could not change the preferences: " + e.message);
    } finally {
      if (current === session) {
        savingPreferences = false;
        renderPreferences();
      }
    }
  }

  // ---- topics ------------------------------------------------------------------

  function topicRow(name) {
    const { li, label } = nameRow("topic", "topic-entry", name);
    const leave = document.createElement("button");
    leave.type = "button";
    leave.className = "leave";
    leave.textContent = "Leave";
    leave.setAttribute("aria-label", "Leave " + name);
    leave.addEventListener("click", () => leaveTopic(name, leave));
    li.append(label, leave);
    return li;
  }

  function renderTopics() {
    const existing = rowsByKey(el.topics);
    const rows = (topics || []).map((name) => {
      const li = existing.get(name) || topicRow(name);
      setUsable(li.querySelector(".leave"), { session: Boolean(sessionToken), busy: leaving.has(name) });
      return li;
    });
    placeRows(el.topics, rows);
    el.topicsEmpty.hidden = rows.length > 0;
    el.topicsEmpty.textContent =
      topics === null && !sessionToken ? "Connect to see your topics." : "You are in no topics.";
  }

  async function loadTopics() {
    const current = session;
    try {
      const answer = await api("GET", "/v1/topics");
      const names = strings(answer && answer.topics);
      if (current === session && names !== null) {
        topics = names.filter((name) => !leaving.has(name));
        renderTopics();
      }
    } catch (e) {
      if (current === session) showError("Could not load the topics: " + e.message);
    }
  }

  async function leaveTopic(name, button) {
    if (leaving.has(name)) return;
    clearError();
    leaving.add(name);
    renderTopics();
    const current = session;
    try {
      await api("DELETE", "/v1/topics/" + encodeURIComponent(name));
      if (current !== session) return;
      // The row goes away: its focused button hands the focus to a neighbour's.
      const row = button.closest("li");
      const neighbour = row && (row.nextElementSibling || row.previousElementSibling);
      const hadFocus = document.activeElement === button;
      topics = (topics || []).filter((t) => t !== name);
      el.topicsStatus.textContent = "Left " + name + ".";
      leaving.delete(name);
      renderTopics();
      if (hadFocus && neighbour) neighbour.querySelector(".leave").focus();
    } catch (e) {
      if (current !== session) return;
      showError("Could not leave " + name + ": " + e.message);
      leaving.delete(name);
      renderTopics();
    }
  }

  // ---- Socket.IO -----------------------------------------------------------

  function connect(token) {
    disconnect();
    clearError();
    session += 1;
    items.clear();   // a new token may be another user: start from an empty list
    deleted.clear();
    unread = null;
    readingAll = false;
    muted = null; // so are its preferences and topics
    categories.clear();
    savingPreferences = false;
    preferenceEvents = 0;
    topics = null;
    leaving.clear();
    el.preferencesStatus.textContent = "";
    el.topicsStatus.textContent = "";
    const claims = decodeClaims(token);
    sessionToken = token;
    render();
    renderPreferences();
    renderTopics();
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
      loadPreferences();
      loadTopics();
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
      renderUnread(); // no token: nothing can be marked read, muted or left any more
      renderPreferences();
      renderTopics();
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
      if (s === socket) merge([n], { count: true, countNew: true });
      if (typeof ack === "function") ack();
    });
    s.on(EVENTS.PENDING_NOTIFICATIONS, (list, ack) => {
      if (s === socket && Array.isArray(list)) merge(list, { count: true, countNew: true });
      if (typeof ack === "function") ack();
    });
    // The server's count: after connect and after every change, on every socket of the user.
    s.on(EVENTS.UNREAD_COUNT, (payload) => {
      if (s !== socket || !payload) return;
      if (Number.isInteger(payload.count) && payload.count >= 0) setUnread(payload.count);
    });
    // Changes made elsewhere (another tab or device), or here: each is applied once.
    s.on(EVENTS.NOTIFICATION_UPDATED, (n) => {
      if (s === socket) merge([n], { count: true });
    });
    s.on(EVENTS.NOTIFICATION_DELETED, (payload) => {
      if (s === socket && payload && typeof payload.id === "string") forget(payload.id, { count: true });
    });
    s.on(EVENTS.NOTIFICATIONS_READ_ALL, (payload) => {
      if (s !== socket || !payload) return;
      if (Number.isInteger(payload.count)) addUnread(-payload.count);
      applyReadAll(payload.readAt);
    });
    // The muted list changed (in another tab, or this one): the server's list, as it is now.
    s.on(EVENTS.PREFERENCES_UPDATED, (payload) => {
      if (s !== socket || !payload || strings(payload.muted) === null) return;
      preferenceEvents += 1;
      setMuted(payload.muted);
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
  el.markAllRead.addEventListener("click", () => markAllRead());

  if (typeof io !== "function") {
    setState("error", "socket.io client failed to load");
    el.connect.disabled = true;
  } else {
    setState("disconnected");
  }
  render();
  renderPreferences();
  renderTopics();
})();
