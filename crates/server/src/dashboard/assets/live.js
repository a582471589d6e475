// ferry dashboard live updates: every page reads without this script; with it, progress
// bars, percentages, times remaining and statuses follow the server-sent events.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var status = document.getElementById("live-status");
  var source = new EventSource("/dashboard/events");
  function fmt(secs) {
    var s = Math.max(0, Math.round(secs));
    if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    if (s >= 60) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return s + " s";
  }
  function each(attr, id, f) {
    var nodes = document.querySelectorAll("[" + attr + "]");
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute(attr) === id) f(nodes[i]);
    }
  }
  // A page left behind (history, back-forward cache) must not keep its stream: browsers
  // allow six HTTP/1.1 connections per host, and streams left open would take them all.
  window.addEventListener("pagehide", function () { source.close(); });
  source.onopen = function () { if (status) status.textContent = "live"; };
  source.onerror = function () { if (status) status.textContent = "reconnecting…"; };
  source.onmessage = function (e) {
    var m;
    try { m = JSON.parse(e.data); } catch (_) { return; }
    if (m.kind === "report") {
      if (typeof m.percent === "number") {
        each("data-progress", m.device_id, function (n) { n.value = m.percent; });
        each("data-percent", m.device_id, function (n) { n.textContent = m.percent.toFixed(0) + " %"; });
      }
      if (typeof m.eta_secs === "number") {
        each("data-remaining", m.device_id, function (n) { n.textContent = fmt(m.eta_secs) + " left"; });
      }
      each("data-status", m.device_id, function (n) {
        n.textContent = m.event === "progress" ? "updating" : m.event + (m.code ? " " + m.code : "");
      });
      var chart = document.getElementById("progress-chart");
      if (chart && m.event === "progress" && chart.src.indexOf(m.device_id) >= 0 && !chart.dataset.busy) {
        chart.dataset.busy = "1";
        setTimeout(function () {
          chart.src = chart.src.split("?")[0] + "?t=" + Date.now();
          delete chart.dataset.busy;
        }, 1000);
      }
    } else if (m.kind === "rollout") {
      var state = document.getElementById("rollout-state");
      if (state && location.pathname === "/dashboard/rollouts/" + m.id) location.reload();
    }
  };
})();
