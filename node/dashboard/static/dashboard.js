/* The dashboard's only script: dates in the browser's locale, the charts, and the
   live refresh. Every page works without it (tables and forms are plain HTML). */
"use strict";
(function () {
  const charts = {};

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = when.toLocaleString();
        el.title = el.getAttribute("datetime");
      }
    });
  }

  function drawCharts(root) {
    if (typeof window.echarts === "undefined") return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      const source = document.getElementById(el.getAttribute("data-chart"));
      if (!source) return;
      const option = JSON.parse(source.textContent);
      const old = window.echarts.getInstanceByDom(el);
      if (old) old.dispose();
      charts[el.id] = window.echarts.init(el, null, { renderer: "canvas" });
      charts[el.id].setOption(option, true);
    });
  }

  /* Fetch the page again and swap its live sections (tables, charts) in place,
     leaving forms as they are. */
  async function refresh() {
    const answer = await fetch(window.location.href, { credentials: "same-origin",
                                                       headers: { Accept: "text/html" } });
    if (!answer.ok || answer.redirected) return false;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
    document.querySelectorAll("[data-live]").forEach(function (el) {
      const next = fresh.getElementById(el.id);
      if (next) el.replaceWith(document.importNode(next, true));
    });
    const main = fresh.getElementById("main");
    if (main && main.dataset.position) {
      document.getElementById("main").dataset.position = main.dataset.position;
    }
    localTimes(document);
    drawCharts(document);
    return true;
  }

  let polling = null;
  async function poll() {
    const main = document.getElementById("main");
    if (!main || !main.dataset.position) return;
    try {
      const answer = await fetch("/api/live", { credentials: "same-origin" });
      if (answer.status === 401) { clearInterval(polling); return; }
      if (!answer.ok) return;
      const live = await answer.json();
      if (String(live.position) !== main.dataset.position) {
        if (await refresh()) {
          main.dataset.position = String(live.position);
          const note = document.getElementById("live-note");
          if (note) note.textContent = "updated " + new Date().toLocaleTimeString();
        }
      }
    } catch (e) {
      /* the node restarting or the network gone: try again at the next tick */
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    drawCharts(document);
    window.addEventListener("resize", function () {
      Object.values(charts).forEach(function (c) { c.resize(); });
    });
    polling = setInterval(poll, 2000);
  });
  window.discoDashboard = { charts: charts, refresh: refresh };
})();
