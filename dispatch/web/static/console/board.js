// The board: announce new button presses and escalations that reached a supervisor, and keep
// sounding for every unanswered incident until a dispatcher takes ownership of it.
"use strict";

(() => {
  const body = document.getElementById("board-rows");
  const known = new Set();
  const supervised = new Set();
  const highlight = new Map();  // incident id -> {cls, until}
  const HIGHLIGHT_MS = 60000;
  const ALARM_EVERY_MS = Number(body.dataset.alarmEvery || 10) * 1000;

  function rows() { return body.querySelectorAll("tr[data-id]"); }

  // The repeating alarm: one announcement per unanswered, unowned incident, every ALARM_EVERY_MS.
  function soundAlarms() {
    for (const row of body.querySelectorAll("tr[data-alarm='1']")) Console.announce("unanswered", row.dataset.id);
  }
  soundAlarms();
  setInterval(soundAlarms, ALARM_EVERY_MS);

  for (const row of rows()) {
    known.add(row.dataset.id);
    if (row.dataset.supervisor === "1") supervised.add(row.dataset.id);
  }

  function stamp() {
    const count = rows().length;

    document.getElementById("open-count").textContent = String(count);
    const time = new Date().toLocaleTimeString(Console.config.lang === "en" ? "en-GB" : "id-ID", {timeZone: "Asia/Jakarta"});
    document.getElementById("board-updated").textContent = Console.t("board.updated", {time});
  }

  body.addEventListener("console:updated", () => {
    const now = Date.now();
    for (const row of rows()) {
      const id = row.dataset.id;
      if (!known.has(id)) {
        known.add(id);
        if (row.dataset.source === "press") {
          highlight.set(id, {cls: "flash-new", until: now + HIGHLIGHT_MS});
          Console.announce("press", id);
        }
      }
      if (row.dataset.supervisor === "1" && !supervised.has(id)) {
        supervised.add(id);
        highlight.set(id, {cls: "flash-alarm", until: now + HIGHLIGHT_MS});
        Console.announce("supervisor", id);
      }
      const mark = highlight.get(id);
      if (mark && mark.until > now) row.classList.add(mark.cls);
    }
    for (const [id, mark] of highlight) if (mark.until <= now) highlight.delete(id);
    stamp();
  });
  stamp();
})();
