// The console's only script of its own: draw embedded Plotly figures, confirm dangerous forms.
// Everything else is htmx attributes in the templates.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("figure.chart").forEach(function (figure) {
      if (figure.dataset.drawn) return;
      var data = figure.querySelector('script[type="application/json"]');
      var canvas = figure.querySelector(".chart-canvas");
      if (!data || !canvas) return;
      var spec = JSON.parse(data.textContent);
      var layout = Object.assign({autosize: true}, spec.layout || {});
      delete layout.template;   // plotly.py's default template: large, and the page styles apply
      Plotly.newPlot(canvas, spec.data || [], layout,
                     {responsive: true, displaylogo: false}).then(function () {
        figure.dataset.drawn = "true";
      });
    });
  }

  // <form data-confirm="Cancel 1,204 jobs?">: ask before a bulk or destructive action.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.dataset && form.dataset.confirm;
    if (event.submitter && event.submitter.dataset.confirm) question = event.submitter.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });
})();

// The live feed keeps its newest lines only, however long the page stays open.
document.addEventListener("htmx:sseMessage", function (event) {
  var feed = event.target.closest && event.target.closest("ol.events");
  if (!feed) return;
  while (feed.children.length > 50) feed.removeChild(feed.lastElementChild);
});

// <input type="checkbox" data-select-all="job_ids">: ticks or clears every box of that name in
// its form (the rows of the page shown).
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!box.dataset || !box.dataset.selectAll) return;
  var scope = box.form || box.closest("table") || document;
  scope.querySelectorAll('input[type="checkbox"][name="' + box.dataset.selectAll + '"]')
    .forEach(function (row) { row.checked = box.checked; });
});

// <div hx-get="/jobs" data-current-address>: a refresh asks for the address as it is when the
// request leaves, with the filters and page the operator chose since the page loaded (htmx
// pushes each into the address bar), never for the one the page was rendered with.
document.addEventListener("htmx:configRequest", function (event) {
  if (!event.detail.elt.hasAttribute("data-current-address")) return;
  event.detail.path = window.location.pathname + window.location.search;
});

// A page whose event stream the server closed (too many open pages: console/web/stream.py)
// polls instead: every few seconds "live-poll" fires, and each live part of the page refreshes
// on it (hx-trigger="… live-poll from:body").
var LIVE_POLL_SECONDS = 5;
document.addEventListener("htmx:sseClose", function (event) {
  if (!event.detail || event.detail.type !== "message" || document.body.dataset.livePoll) return;
  document.body.dataset.livePoll = "on";
  var note = document.getElementById("live-fallback");
  if (note) note.hidden = false;
  window.setInterval(function () { htmx.trigger(document.body, "live-poll"); },
                     LIVE_POLL_SECONDS * 1000);
});
