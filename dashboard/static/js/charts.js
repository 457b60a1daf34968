// Node charts with uPlot (vendored): gaps where no telemetry arrived, a tooltip at the cursor, dates and the
// zone on the axis, times in the browser's zone or UTC (remembered), From/To fields in that zone, live samples.
(function () {
  "use strict";
  var KEY = "allfleet.tz";
  var charts = [];
  var data = null;

  function mode() { return window.localStorage.getItem(KEY) === "utc" ? "utc" : "local"; }
  function zoneName() { return mode() === "utc" ? "UTC" : (Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Wall-clock parts of an epoch-seconds time in the chosen zone.
  function parts(ts) {
    var d = new Date(ts * 1000), utc = mode() === "utc";
    return { y: utc ? d.getUTCFullYear() : d.getFullYear(), mo: (utc ? d.getUTCMonth() : d.getMonth()) + 1,
             d: utc ? d.getUTCDate() : d.getDate(), h: utc ? d.getUTCHours() : d.getHours(),
             mi: utc ? d.getUTCMinutes() : d.getMinutes(), s: utc ? d.getUTCSeconds() : d.getSeconds() };
  }
  function stamp(ts) { var p = parts(ts); return p.y + "-" + pad(p.mo) + "-" + pad(p.d) + " " + pad(p.h) + ":" + pad(p.mi) + ":" + pad(p.s); }
  function fieldValue(ts) { var p = parts(ts); return p.y + "-" + pad(p.mo) + "-" + pad(p.d) + "T" + pad(p.h) + ":" + pad(p.mi); }

  // A datetime-local value meant in the chosen zone, as epoch seconds.
  function parseField(value) {
    var m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)/.exec(value || "");
    if (!m) { return null; }
    var args = [+m[1], +m[2] - 1, +m[3], +m[4], +m[5]];
    return (mode() === "utc" ? Date.UTC.apply(null, args) : new Date(args[0], args[1], args[2], args[3], args[4]).getTime()) / 1000;
  }

  function tooltipPlugin(unit) {
    var tip;
    return { hooks: {
      init: function (u) { tip = document.createElement("div"); tip.className = "chart-tip"; tip.hidden = true; u.over.appendChild(tip); },
      setCursor: function (u) {
        var i = u.cursor.idx;
        var v = i === null || i === undefined ? null : u.data[1][i];
        if (v === null || v === undefined) { tip.hidden = true; return; }
        tip.hidden = false;
        tip.textContent = stamp(u.data[0][i]) + " · " + (Math.round(v * 10) / 10) + " " + unit;
        tip.style.left = Math.min(u.cursor.left + 10, u.over.clientWidth - 170) + "px";
        tip.style.top = Math.max(u.cursor.top - 28, 0) + "px";
      }
    } };
  }

  function build(host, field) {
    var width = Math.max(host.clientWidth, 280);
    var opts = {
      width: width, height: 200, plugins: [tooltipPlugin(field.unit)],
      tzDate: function (ts) { return mode() === "utc" ? uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : new Date(ts * 1000); },
      scales: { x: { time: true, range: function () { return [data.start, data.end]; } },
                y: { range: function (u, min, max) { return [0, field.max || Math.max(1, (max || 1) * 1.15)]; } } },
      series: [{ label: "Time (" + zoneName() + ")", value: function (u, ts) { return ts === null ? "—" : stamp(ts); } },
               { label: field.title + " (" + field.unit + ")", stroke: "#1f6fd1", fill: "rgba(31,111,209,.08)", width: 1.5,
                 spanGaps: false, points: { size: 4 } }],
      axes: [{ label: zoneName() }, { size: 48 }],
      legend: { show: true, live: true }
    };
    host.textContent = "";
    return new uPlot(opts, [data.t, data.series[field.field]], host);
  }

  function draw() {
    var root = document.getElementById("node-charts");
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    data.fields.forEach(function (field) {
      var host = root.querySelector('[data-chart="' + field.field + '"]');
      if (host) { var c = build(host, field); c.field = field.field; charts.push(c); }
    });
    root.setAttribute("data-drawn", String(data.t.length));
  }

  function relabel() {
    document.querySelectorAll("[data-zone-label]").forEach(function (el) { el.textContent = "(" + zoneName() + ")"; });
    document.querySelectorAll("time[data-utc]").forEach(function (el) {
      var v = el.getAttribute("data-utc");
      if (v) { el.textContent = stamp(Date.parse(v) / 1000); }
    });
    document.querySelectorAll("[data-tz]").forEach(function (b) { b.setAttribute("aria-pressed", String(b.getAttribute("data-tz") === mode())); });
  }

  function setUpFields() {
    var form = document.getElementById("range-form");
    if (!form) { return; }
    var inputs = form.querySelectorAll("input[data-utc-input]");
    inputs.forEach(function (input) {
      var utc = Date.UTC.apply(null, (input.value.match(/\d+/g) || []).map(Number).map(function (n, i) { return i === 1 ? n - 1 : n; }));
      if (!isNaN(utc)) { input.setAttribute("data-epoch", String(utc / 1000)); input.value = fieldValue(utc / 1000); }
    });
    form.addEventListener("submit", function () {
      // The server reads From/To as UTC: convert what the user typed in the shown zone.
      inputs.forEach(function (input) {
        var ts = parseField(input.value);
        if (ts !== null) { var d = new Date(ts * 1000); input.value = d.toISOString().slice(0, 16); }
      });
    });
  }

  function switchZone(next) {
    var form = document.getElementById("range-form");
    var typed = form ? Array.prototype.map.call(form.querySelectorAll("input[data-utc-input]"), function (i) { return parseField(i.value); }) : [];
    window.localStorage.setItem(KEY, next);
    if (form) {
      form.querySelectorAll("input[data-utc-input]").forEach(function (input, i) { if (typed[i] !== null) { input.value = fieldValue(typed[i]); } });
    }
    relabel();
    if (data) { draw(); }
  }

  function append(sample) {
    if (!data || sample.t <= data.t[data.t.length - 1]) { return; }
    var last = data.t[data.t.length - 1];
    var columns = Object.keys(data.series);
    if (last !== undefined && sample.t - last > data.gap_s) {
      data.t.push((sample.t + last) / 2);
      columns.forEach(function (k) { data.series[k].push(null); });
    }
    data.t.push(sample.t);
    columns.forEach(function (k) { data.series[k].push(sample[k] === undefined ? null : sample[k]); });
    var span = data.end - data.start;
    data.end = Math.max(data.end, sample.t);
    data.start = data.end - span;
    charts.forEach(function (c) { c.setData([data.t, data.series[c.field]]); });
    document.getElementById("node-charts").setAttribute("data-drawn", String(data.t.length));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("node-charts");
    document.querySelectorAll("[data-tz]").forEach(function (b) {
      b.addEventListener("click", function () { switchZone(b.getAttribute("data-tz")); });
    });
    setUpFields();
    relabel();
    if (!root || !window.uPlot || !window.fetch) { return; }
    fetch(root.getAttribute("data-series-url"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (json) { data = json; draw(); });
    if (root.getAttribute("data-live") === "yes") {
      document.addEventListener("live:telemetry", function (e) { append(e.detail); });
    }
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.setSize({ width: Math.max(c.root.parentNode.clientWidth, 280), height: 200 }); }); });
  });
})();
