// Agreement with reviewers per day (uPlot, vendored): the estimate from randomly sampled reviews with its 95%
// Wilson interval, agreement over every review, and the alert threshold.
(function () {
  "use strict";
  function pct(v) { return v === null || v === undefined ? "—" : Math.round(v * 100) + "%"; }
  function draw(host, data) {
    var pts = data.points;
    if (!pts.length) { host.textContent = "No reviews yet."; return; }
    var xs = pts.map(function (p) { return p.t; });
    var col = function (k) { return pts.map(function (p) { return p[k]; }); };
    var threshold = pts.map(function () { return data.threshold; });
    var opts = {
      width: Math.max(host.clientWidth, 280), height: 260,
      scales: { x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } }, y: { range: [0, 1] } },
      series: [
        { label: "Day (UTC)", value: function (u, ts) { return ts === null ? "—" : new Date(ts * 1000).toISOString().slice(0, 10); } },
        { label: "Estimate (sampled)", stroke: "#1f6fd1", width: 2, points: { size: 7 }, value: function (u, v) { return pct(v); } },
        { label: "95% CI low", stroke: "#8fb3e6", dash: [4, 4], width: 1, points: { size: 4 }, value: function (u, v) { return pct(v); } },
        { label: "95% CI high", stroke: "#8fb3e6", dash: [4, 4], width: 1, points: { size: 4 }, value: function (u, v) { return pct(v); } },
        { label: "All reviews", stroke: "#7a7f87", width: 1, points: { size: 5 }, value: function (u, v) { return pct(v); } },
        { label: "Alert below", stroke: "#c0392b", dash: [2, 6], width: 1, points: { show: false }, value: function (u, v) { return pct(v); } }
      ],
      bands: [{ series: [3, 2], fill: "rgba(31,111,209,.12)" }],
      axes: [{ label: "UTC" }, { size: 52, values: function (u, vals) { return vals.map(pct); } }],
      legend: { show: true, live: true }
    };
    host.textContent = "";
    new uPlot(opts, [xs, col("estimate"), col("low"), col("high"), col("all_agreement"), threshold], host);
    host.setAttribute("data-drawn", String(pts.length));
  }
  document.addEventListener("DOMContentLoaded", function () {
    var host = document.getElementById("agreement-chart");
    if (!host || typeof uPlot === "undefined") { return; }
    fetch(host.getAttribute("data-series-url"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) { draw(host, d); })
      .catch(function () { host.textContent = "The chart could not be loaded."; });
  });
})();
