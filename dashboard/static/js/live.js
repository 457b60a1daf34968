// Live updates over server-sent events. Elements opt in with data attributes; every value is
// written with textContent (never innerHTML), so nothing a node sends can become markup.
(function () {
  "use strict";

  function setStatus(el, on) {
    if (!el) { return; }
    el.classList.toggle("on", on);
    el.textContent = on ? "Live" : "Reconnecting…";
  }

  function setField(row, name, value) {
    var cell = row.querySelector('[data-field="' + name + '"]');
    if (!cell) { return; }
    var text = value === null || value === undefined ? "—" : String(value);
    if (cell.hasAttribute("data-meter") && typeof value === "number" && !cell.querySelector("meter")) {
      cell.textContent = "";
      var created = document.createElement("meter");
      created.min = 0; created.max = 100; created.low = 70; created.high = 90; created.optimum = 0;
      var span = document.createElement("span");
      span.setAttribute("data-text", "");
      cell.appendChild(created);
      cell.appendChild(span);
    }
    var meter = cell.querySelector("meter");
    if (meter && typeof value === "number") { meter.value = value; }
    var target = cell.querySelector("[data-text]") || cell;
    if (target.textContent !== text) {
      target.textContent = text;
      cell.classList.remove("flash"); void cell.offsetWidth; cell.classList.add("flash");
    }
  }

  function setBadge(row, name, value, extraClass) {
    var badge = row.querySelector('[data-badge="' + name + '"]');
    if (!badge || value === undefined) { return; }
    badge.className = "badge " + value + (extraClass ? " " + extraClass : "");
    badge.textContent = value;
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text === null || text === undefined ? "—" : String(text);
    return td;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function badge(value, extra) {
    var span = document.createElement("span");
    span.className = "badge " + value + (extra ? " " + extra : "");
    span.textContent = value;
    return span;
  }

  // Columns after Node and Status, in the fleet table's order; numbers right-aligned.
  var FLEET_FIELDS = ["last_seen", "zone", "model_version", "software_version", "runtime", "inference_device", "precision",
                      "cpu", "memory", "disk", "temperature", "uptime_s", "outbox"];
  var NUMERIC = ["cpu", "memory", "disk", "temperature", "uptime_s", "outbox"];
  var METERS = ["cpu", "memory", "disk"];

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return null; }
    var s = Math.floor(seconds), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) { return d + "d " + h + "h"; }
    if (h) { return h + "h " + m + "m"; }
    return m ? m + "m" : s + "s";
  }

  function newFleetRow(root, data) {
    var body = root.querySelector("tbody");
    if (!body) { return null; }
    var empty = body.querySelector(".empty-row");
    if (empty) { empty.remove(); }
    var row = document.createElement("tr");
    row.setAttribute("data-node", data.device_id);
    var first = document.createElement("td");
    var dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("data-dot", "");
    first.appendChild(dot);
    first.appendChild(link(root.getAttribute("data-node-url").replace("__id__", encodeURIComponent(data.device_id)), data.device_id));
    var marker = link(root.getAttribute("data-alerts-url") || "/alerts", "⚠ ");
    marker.className = "alert-marker";
    marker.setAttribute("data-alerts", "");
    marker.hidden = true;
    var count = document.createElement("span");
    count.setAttribute("data-field", "alerts");
    marker.appendChild(count);
    first.appendChild(document.createTextNode(" "));
    first.appendChild(marker);
    row.appendChild(first);
    var state = document.createElement("td");
    var b = badge(data.shown);
    b.setAttribute("data-badge", "state");
    state.appendChild(b);
    var why = document.createElement("div");
    why.className = "reason";
    why.setAttribute("data-field", "reason");
    why.hidden = true;
    state.appendChild(why);
    row.appendChild(state);
    FLEET_FIELDS.forEach(function (name) {
      var td = cell(null, NUMERIC.indexOf(name) >= 0 ? "num" : "");
      td.setAttribute("data-field", name);
      if (METERS.indexOf(name) >= 0) { td.setAttribute("data-meter", ""); }
      row.appendChild(td);
    });
    body.appendChild(row);
    return row;
  }

  // One node's view (a fleet row, or the node page's header and cards): the server's `shown` state is the
  // only state displayed, so a silent node reads OFFLINE here exactly as on a reloaded page.
  function applyNode(el, data) {
    var shown = data.shown || data.state;
    var b = el.querySelector('[data-badge="state"]');
    if (b) { b.className = "badge " + shown; b.textContent = shown; }
    if (el.tagName === "TR") {
      el.classList.toggle("no-model", shown === "NO_MODEL");
      el.classList.toggle("stale", shown !== "NO_MODEL" && shown !== "ONLINE");
    }
    el.querySelectorAll("[data-dot]").forEach(function (dot) { dot.className = "dot " + shown; });
    FLEET_FIELDS.concat(["alerts"]).forEach(function (name) {
      setField(el, name, name === "uptime_s" ? duration(data.uptime_s) : data[name]);
    });
    var up = el.querySelector('[data-field="uptime_s"]');
    if (up) { up.setAttribute("data-value", data.uptime_s === null || data.uptime_s === undefined ? "" : String(data.uptime_s)); }
    var marker = el.querySelector("[data-alerts]");
    if (marker) {
      marker.hidden = !data.alerts;
      marker.className = "alert-marker " + (data.alert_severity || "");
    }
    var reason = el.querySelector('[data-field="reason"]');
    if (reason) {
      reason.textContent = data.reason ? (reason.getAttribute("data-prefix") || "") + data.reason : "";
      reason.hidden = !data.reason;
    }
  }

  var handlers = {
    node: function (root, data) {
      var els = root.querySelectorAll('[data-node="' + CSS.escape(data.device_id) + '"]');
      if (!els.length) {
        var row = newFleetRow(root, data);
        els = row ? [row] : [];
      }
      els.forEach(function (el) { applyNode(el, data); });
    },

    summary: function (root, data) {
      document.querySelectorAll("[data-summary]").forEach(function (node) {
        var key = node.getAttribute("data-summary");
        if (key in data) { node.textContent = String(data[key]); }
      });
    },

    telemetry: function () {},

    result: function (root, data) {
      var body = root.querySelector("tbody");
      if (!body || root.querySelector('tr[data-result="' + data.id + '"]')) { return; }
      var empty = body.querySelector(".empty-row");
      if (empty) { empty.remove(); }
      var row = document.createElement("tr");
      row.setAttribute("data-result", data.id);
      row.appendChild(cell(data.received_at));
      var nodeCell = document.createElement("td");
      nodeCell.appendChild(link(root.getAttribute("data-node-url").replace("__id__", encodeURIComponent(data.device_id)), data.device_id));
      row.appendChild(nodeCell);
      var sample = cell(data.sample_id, "mono");
      row.appendChild(sample);
      var label = document.createElement("td");
      // An out-of-distribution result is "needs review", never shown as a diagnosis.
      label.appendChild(badge(data.out_of_distribution ? "review" : "label", null));
      label.firstChild.textContent = data.verdict;
      label.firstChild.setAttribute("data-verdict", data.out_of_distribution ? "review" : "label");
      if (data.uncertain) { label.appendChild(document.createTextNode(" ")); label.appendChild(badge("uncertain")); }
      row.appendChild(label);
      row.appendChild(cell(data.confidence, "num"));
      row.appendChild(cell(data.ood_score, "num"));
      row.appendChild(cell(data.model_version));
      row.appendChild(cell(data.inference_ms, "num"));
      row.classList.add("flash");
      body.insertBefore(row, body.firstChild);
      var limit = parseInt(root.getAttribute("data-limit") || "50", 10);
      while (body.rows.length > limit) { body.deleteRow(body.rows.length - 1); }
    },

    target: function (root, data) {
      var row = root.querySelector('tr[data-target="' + CSS.escape(data.device_id) + '"]');
      if (!row) { return; }
      setBadge(row, "state", data.state);
      setField(row, "updated_at", data.updated_at);
      setField(row, "reason", data.reason);
      setField(row, "stage", data.stage);
      setField(row, "sends", data.sends);
    },

    // The Phases table sits outside the targets table the stream is bound to: look it up in the document.
    phase: function (root, data) {
      var row = document.querySelector('tr[data-phase="' + CSS.escape(String(data.index)) + '"]');
      if (!row) { return; }
      row.classList.toggle("current", !!data.current);
      ["nodes", "active", "in_flight", "failed", "started", "duration"].forEach(function (name) {
        setField(row, name, data[name]);
      });
      var now = row.querySelector("[data-now]");
      if (now) {
        now.textContent = "";
        if (data.current) {
          now.appendChild(document.createTextNode(" "));
          now.appendChild(badge(data.status)).textContent = "now";
        }
      }
      var gate = row.querySelector('[data-field="gate"]');
      var shown = JSON.stringify(data.gate || null);
      if (gate && gate.getAttribute("data-shown") !== shown) {
        gate.setAttribute("data-shown", shown);
        gate.textContent = data.gate ? "" : "—";
        if (data.gate) {
          var verdict = badge(data.gate.tone);
          verdict.textContent = data.gate.status;
          gate.appendChild(verdict);
          gate.appendChild(document.createTextNode(" " + data.gate.text));
        }
      }
    },

    rollout: function (root, data) {
      var el = document.querySelector('[data-badge="rollout-status"]');
      if (el) { el.className = "badge " + data.status; el.textContent = data.status; }
      document.querySelectorAll("[data-count]").forEach(function (node) {
        var key = node.getAttribute("data-count");
        if (data.counts) { node.textContent = String(data.counts[key] || 0); }
      });
      document.querySelectorAll("[data-when-status]").forEach(function (node) {
        var allowed = node.getAttribute("data-when-status").split(" ");
        node.hidden = allowed.indexOf(data.status) < 0;
      });
    }
  };

  function connect(root) {
    var url = root.getAttribute("data-stream");
    var status = document.querySelector('[data-live-for="' + root.id + '"]');
    var source = new EventSource(url);
    source.onopen = function () { setStatus(status, true); };
    source.onerror = function () { setStatus(status, false); };
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (event) {
        try {
          var data = JSON.parse(event.data);
          handlers[kind](root, data);
          // Other scripts (charts, table tools) follow the same stream without opening another.
          document.dispatchEvent(new CustomEvent("live:" + kind, { detail: data }));
        } catch (err) { if (window.console) { console.warn(err); } }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.EventSource) { return; }
    document.querySelectorAll("[data-stream]").forEach(connect);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();
