// rqjobs web: live progress, local times and confirmations. No inline script anywhere
// (the Content-Security-Policy forbids it); this file is served from the package.
(function () {
  "use strict";
  var FINAL = ["finished", "failed", "canceled"];
  var POLL_MS = 1000;

  function localTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.title = when.toLocaleString(); }
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function liveElements() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-live-task]"), function (el) {
      return FINAL.indexOf(el.getAttribute("data-status")) < 0;
    });
  }

  function update(el, task) {
    var bar = el.querySelector("progress");
    if (bar) { bar.value = task.progress; bar.textContent = task.progress + "%"; }
    var pct = el.querySelector(".pct");
    if (pct) { pct.textContent = task.progress + "%"; }
    var message = el.querySelector(".message");
    if (message) { message.textContent = task.progress_message || ""; }
    var attempts = el.querySelector("#attempts");
    if (attempts) { attempts.textContent = task.attempts; }
    var before = el.getAttribute("data-status");
    if (before !== task.status) {
      el.setAttribute("data-status", task.status);
      var row = el.closest("tr");
      var status = row ? row.querySelector(".status") : el.querySelector(".status");
      if (status) { status.textContent = task.status; status.className = "status status-" + task.status; }
      // the task page shows the result, log and timeline once the task ends: fetch them
      if (FINAL.indexOf(task.status) >= 0 && el.hasAttribute("data-reload-when-final")) {
        window.location.reload();
      }
    }
  }

  function poll() {
    var elements = liveElements();
    if (!elements.length) { return; }
    var ids = elements.map(function (el) { return el.getAttribute("data-live-task"); });
    var url = document.body.getAttribute("data-progress-url") + "?ids=" + encodeURIComponent(ids.join(","));
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { tasks: [] }; })
      .then(function (data) {
        var byId = {};
        data.tasks.forEach(function (task) { byId[String(task.id)] = task; });
        elements.forEach(function (el) {
          var task = byId[el.getAttribute("data-live-task")];
          if (task) { update(el, task); }
        });
      })
      .catch(function () { /* the server restarted or the network blinked: try again */ })
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    confirmations();
    if (liveElements().length) { window.setTimeout(poll, POLL_MS); }
  });
})();
