/* The dashboard's auto-refresh: fetch the figures again every few seconds and swap
   them in. Pausable (remembered in this browser); idle while the tab is hidden. */
"use strict";
(function () {
  function start() {
    const root = document.getElementById("tdb-dashboard");
    const body = document.getElementById("tdb-dashboard-body");
    const toggle = document.getElementById("tdb-refresh-toggle");
    const state = document.getElementById("tdb-refresh-state");
    if (!root || !body || !toggle || !state) {
      return;
    }
    const key = "django_tasks_db.dashboard.paused";
    const every = (parseFloat(root.dataset.interval) || 5) * 1000;
    let paused = false;
    let busy = false;
    try {
      paused = window.localStorage.getItem(key) === "1";
    } catch (e) {
      paused = false;
    }

    function show(text) {
      state.textContent = text;
    }

    function label() {
      toggle.textContent = paused ? toggle.dataset.resume : toggle.dataset.pause;
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      show(paused ? toggle.dataset.pausedText : toggle.dataset.runningText);
    }

    async function refresh() {
      if (paused || busy || document.hidden) {
        return;
      }
      busy = true;
      try {
        const response = await fetch(root.dataset.url, {
          credentials: "same-origin",
          headers: {"X-Requested-With": "XMLHttpRequest"},
        });
        if (response.redirected) {
          window.location.reload(); // signed out meanwhile: let the admin ask again
          return;
        }
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        const html = await response.text();
        if (!paused) {
          body.innerHTML = html;
          show(toggle.dataset.runningText);
        }
      } catch (e) {
        show(toggle.dataset.failedText);
      } finally {
        busy = false;
      }
    }

    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      try {
        window.localStorage.setItem(key, paused ? "1" : "0");
      } catch (e) {
        // private mode: the choice lasts as long as the page
      }
      label();
      if (!paused) {
        refresh();
      }
    });
    label();
    window.setInterval(refresh, every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
