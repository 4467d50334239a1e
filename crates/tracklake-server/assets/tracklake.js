/*! tracklake.js — first-party page tracking for tracklake (served at /tracklake.js).
 *
 * <script src="https://TRACKLAKE/tracklake.js" data-key="WRITE_KEY" defer></script>
 *
 * data-key         the write key (public by design); omit when tracklake asks for none
 * data-host        where to send (default: where this script came from)
 * data-auto-page   "false": no page view on load or on single-page-app navigation
 * data-respect-dnt "true": send nothing when the browser asks not to be tracked
 *                  (Do Not Track or Global Privacy Control)
 * data-cookieless  "true": store nothing in the browser; every page load is a
 *                  new anonymous visitor and session
 *
 * window.tracklake.page(), .track(name, properties), .identify(userId, traits),
 * .flush(). Messages are Segment's (docs/API.md), batched to /v1/b as text/plain
 * (no preflight), sent with sendBeacon when the page is hidden or left.
 */
(function () {
  "use strict";
  if (window.tracklake && window.tracklake.version) return;
  var script = document.currentScript || document.querySelector('script[src*="tracklake.js"]');
  var data = (script && script.dataset) || {};
  var host = (data.host || (script ? new URL(script.src, location.href).origin : location.origin)).replace(/\/$/, "");
  var endpoint = host + "/v1/b";
  var key = data.key || "";
  var cookieless = data.cookieless === "true";
  var SESSION_MS = 30 * 60 * 1000;
  var BATCH = 20, WAIT_MS = 1000, BEACON_BYTES = 60000;
  var noop = function () {};

  var optedOut = data.respectDnt === "true" &&
    (navigator.doNotTrack === "1" || window.doNotTrack === "1" || navigator.globalPrivacyControl === true);
  if (optedOut) {
    window.tracklake = { version: 1, page: noop, track: noop, identify: noop, flush: noop, optedOut: true };
    return;
  }

  var memory = {};
  function load(name) {
    if (cookieless) return memory[name];
    try { return JSON.parse(localStorage.getItem("tracklake." + name)); } catch (e) { return memory[name]; }
  }
  function save(name, value) {
    memory[name] = value;
    if (cookieless) return;
    try { localStorage.setItem("tracklake." + name, JSON.stringify(value)); } catch (e) { /* private mode: memory */ }
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }

  var anonymousId = load("anonymous_id") || uuid();
  save("anonymous_id", anonymousId);
  // A session ends after 30 minutes without an event.
  function session() {
    var now = Date.now(), s = load("session");
    if (!s || now - s.last > SESSION_MS) s = { id: uuid(), last: now };
    s.last = now;
    save("session", s);
    return s.id;
  }

  var CAMPAIGN = { utm_source: "source", utm_medium: "medium", utm_campaign: "name", utm_term: "term", utm_content: "content" };
  function campaign() {
    var out = {}, found = false;
    new URLSearchParams(location.search).forEach(function (v, k) {
      if (CAMPAIGN[k]) { out[CAMPAIGN[k]] = v; found = true; }
    });
    return found ? out : undefined;
  }
  var referrer = document.referrer;
  function page() {
    return { url: location.href, path: location.pathname, search: location.search, title: document.title, referrer: referrer };
  }

  var queue = [], timer = null;
  function message(type, fields) {
    var m = {
      type: type, messageId: uuid(), anonymousId: anonymousId, timestamp: new Date().toISOString(),
      context: {
        page: page(), campaign: campaign(), sessionId: session(), userAgent: navigator.userAgent,
        locale: navigator.language, screen: { width: screen.width, height: screen.height, density: window.devicePixelRatio },
        library: { name: "tracklake.js", version: "1" },
      },
    };
    var userId = load("user_id");
    if (userId) m.userId = userId;
    for (var f in fields) if (fields[f] !== undefined) m[f] = fields[f];
    queue.push(m);
    if (queue.length >= BATCH) flush();
    else if (!timer) timer = setTimeout(flush, WAIT_MS);
  }

  function body(batch) {
    return JSON.stringify({ writeKey: key, sentAt: new Date().toISOString(), batch: batch });
  }
  // Sends what is queued; `leaving`: the page is going away, so the
  // browser must finish the request on its own (sendBeacon, else keepalive).
  function flush(leaving) {
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      var batch = queue.splice(0, BATCH), text = body(batch);
      if (leaving && navigator.sendBeacon && text.length < BEACON_BYTES &&
          navigator.sendBeacon(endpoint, new Blob([text], { type: "text/plain" }))) continue;
      send(batch, text);
    }
  }
  function send(batch, text) {
    fetch(endpoint, { method: "POST", body: text, keepalive: text.length < BEACON_BYTES, headers: { "Content-Type": "text/plain" } })
      .then(function (r) {
        // Overloaded or down: try again later; a refusal (4xx) is final.
        if (r.status >= 500 || r.status === 429) retry(batch);
        else if (!r.ok) console.warn("tracklake: " + r.status + " from " + endpoint);
      }, function () { retry(batch); });
  }
  function retry(batch) {
    queue = batch.concat(queue);
    if (!timer) timer = setTimeout(flush, 5000);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", function () { flush(true); });

  var api = {
    version: 1,
    page: function (properties) {
      var p = page();
      var props = properties || {};
      for (var k in p) if (props[k] === undefined) props[k] = p[k];
      message("page", { properties: props });
    },
    track: function (name, properties) { message("track", { event: String(name), properties: properties || {} }); },
    identify: function (userId, traits) {
      if (userId != null) save("user_id", String(userId));
      message("identify", { userId: userId != null ? String(userId) : undefined, traits: traits || {} });
    },
    flush: function () { flush(false); },
    anonymousId: function () { return anonymousId; },
  };
  window.tracklake = api;

  if (data.autoPage !== "false") {
    api.page();
    // Single-page apps: a page view on each change of path.
    var last = location.pathname + location.search;
    var changed = function () {
      var now = location.pathname + location.search;
      if (now === last) return;
      referrer = location.origin + last;
      last = now;
      api.page();
    };
    ["pushState", "replaceState"].forEach(function (name) {
      var original = history[name];
      history[name] = function () {
        var result = original.apply(this, arguments);
        changed();
        return result;
      };
    });
    window.addEventListener("popstate", changed);
  }
})();
