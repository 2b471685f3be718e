// The task page of django_tasks_db's admin: confirms cancel/abort, and while the
// task runs, refreshes its log and progress from <id>/live.json every 2 seconds;
// when its state changes the page reloads once to show the outcome.
"use strict";
{
    document.addEventListener("submit", (event) => {
        const question = event.target.dataset && event.target.dataset.dtdbConfirm;
        if (question && !window.confirm(question)) {
            event.preventDefault();
        }
    });

    const EVERY_MS = 2000;
    let page = null;  // the element that names the live view, once the page is parsed

    function showProgress(progress) {
        const section = document.getElementById("dtdb-progress");
        if (!section || !progress) {
            return;
        }
        section.hidden = false;
        const bar = section.querySelector("progress");
        if (progress.percent === null || progress.percent === undefined) {
            bar.removeAttribute("value");
        } else {
            bar.value = progress.percent;
        }
        let text = String(progress.current ?? "");
        if (progress.total !== null && progress.total !== undefined) {
            text += " / " + progress.total;
        }
        if (progress.percent !== null && progress.percent !== undefined) {
            text += " (" + progress.percent + " %)";
        }
        section.querySelector(".dtdb-progress-text").textContent = text;
        section.querySelector(".dtdb-progress-message").textContent = progress.message || "";
    }

    function showLog(text) {
        const log = document.getElementById("dtdb-log");
        if (!log) {
            return;
        }
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = text || log.dataset.empty || "";
        if (atEnd) {
            log.scrollTop = log.scrollHeight;
        }
    }

    async function refresh() {
        try {
            const response = await fetch(page.dataset.dtdbLive, {
                credentials: "same-origin",
                headers: {Accept: "application/json"},
            });
            if (response.ok) {
                const data = await response.json();
                if (data.status !== page.dataset.dtdbStatus) {
                    window.location.reload();
                    return;
                }
                showLog(data.log);
                showProgress(data.progress);
            }
        } catch (error) {
            // The server may be restarting: try again at the next tick.
        }
        window.setTimeout(refresh, EVERY_MS);
    }

    function start() {
        page = document.querySelector("[data-dtdb-live]");
        if (!page) {
            return;
        }
        const log = document.getElementById("dtdb-log");
        if (log) {
            log.scrollTop = log.scrollHeight;
        }
        window.setTimeout(refresh, EVERY_MS);
    }

    // The admin loads this script in the page's head, before the body exists.
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
}
