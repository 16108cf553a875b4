// Shared by every console page: live updates over server-sent events, ticking ages, sound alerts.
"use strict";

const Console = (() => {
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const alerts = [];  // what was announced (read by the browser tests; harmless otherwise)
  window.consoleAlerts = alerts;

  // The catalogue's texts are gettext python-format strings: %(name)s parameters, %% for a percent sign.
  function t(key, params) {
    const text = config.strings[key] || key;
    return text.replace(/%\((\w+)\)s|%%/g, (match, name) => (name === undefined ? "%" : String((params || {})[name] ?? "—")));
  }

  // Same output as dispatch.console.i18n.duration, so ticking values match server-rendered ones.
  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const total = Math.max(0, Math.floor(seconds));
    if (total < 60) return total + " s";
    const minutes = Math.floor(total / 60), secs = total % 60;
    if (minutes < 60) return minutes + " min " + String(secs).padStart(2, "0") + " s";
    return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
  }

  function tick() {
    const now = performance.now();
    for (const el of document.querySelectorAll("[data-tick], [data-countdown]")) {
      if (!el.dataset.t0) el.dataset.t0 = String(now);
      const elapsed = (now - Number(el.dataset.t0)) / 1000;
      if (el.dataset.tick !== undefined) el.textContent = duration(Number(el.dataset.tick) + elapsed);
      else el.textContent = duration(Math.max(0, Number(el.dataset.countdown) - elapsed));
    }
  }

  // -- sound: a beep made with WebAudio (no audio file); browsers allow it after a user gesture.
  let audio = null;
  const soundButton = document.getElementById("sound");
  function audioContext() {
    if (!audio && (window.AudioContext || window.webkitAudioContext)) {
      audio = new (window.AudioContext || window.webkitAudioContext)();
    }
    return audio;
  }
  function showSoundState() {
    if (!soundButton) return;
    const ctx = audioContext();
    const on = ctx && ctx.state === "running";
    // Shown only while the browser keeps sound off (until the first click): the header stays short.
    soundButton.hidden = Boolean(on);
    soundButton.textContent = t("sound.on");
  }
  function unlock() {
    const ctx = audioContext();
    if (ctx && ctx.state !== "running") ctx.resume().then(showSoundState, showSoundState);
  }
  function beep(kind) {
    const ctx = audioContext();
    if (!ctx || ctx.state !== "running") return false;
    // A press: two short high beeps. A supervisor escalation: a falling three-tone alarm.
    // Nobody answered: a longer siren, repeated by the board until someone takes ownership.
    const tones = {supervisor: [880, 660, 440], unanswered: [440, 880, 440, 880, 440]}[kind] || [988, 988];
    tones.forEach((freq, i) => {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      const start = ctx.currentTime + i * 0.22;
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + 0.2);
    });
    return true;
  }
  function announce(kind, id) {
    const sounded = beep(kind);
    alerts.push({kind, id, sounded, at: Date.now()});
    document.body.dataset.lastAlert = kind + ":" + id;
    const text = t({supervisor: "alert.supervisor", unanswered: "alert.unanswered"}[kind] || "alert.new_press", {id});
    const key = kind + ":" + id;
    document.querySelectorAll(".flash.alarm").forEach((old) => { if (old.dataset.key === key) old.remove(); });
    const note = document.createElement("p");
    note.dataset.key = key;  // a repeated alarm replaces its own note instead of stacking
    note.className = "flash alarm";
    note.setAttribute("role", "alert");
    note.textContent = text;
    let box = document.querySelector(".flashes");
    if (!box) {
      box = document.createElement("div");
      box.className = "flashes";
      document.querySelector("main").before(box);
    }
    box.append(note);
    setTimeout(() => note.remove(), 20000);
  }

  // -- live parts: elements with data-live-src are re-fetched on every change (and every data-live-every s).
  const inFlight = new Set();
  const again = new Set();
  async function refresh(el) {
    if (inFlight.has(el)) { again.add(el); return; }
    inFlight.add(el);
    try {
      const response = await fetch(el.dataset.liveSrc, {cache: "no-store", credentials: "same-origin"});
      if (response.redirected || response.status === 401) { window.location.reload(); return; }
      if (!response.ok) return;
      const html = await response.text();
      if (html !== el.dataset.liveHtml) {
        el.dataset.liveHtml = html;
        el.innerHTML = html;
        tick();
      }
      el.dispatchEvent(new CustomEvent("console:updated", {bubbles: true}));
    } catch (e) {
      // The stream's own reconnect will bring us back; nothing to do for one failed fetch.
    } finally {
      inFlight.delete(el);
      if (again.delete(el)) refresh(el);
    }
  }
  function refreshAll() {
    document.querySelectorAll("[data-live-src]").forEach(refresh);
    document.dispatchEvent(new CustomEvent("console:change"));
  }

  // Over the server's cap on event streams (dispatch/console/live.py: 429) EventSource gives up
  // for good, as on any answer but 200: the page then re-fetches on a timer and tries a stream
  // again later. The numbers match live.FALLBACK_POLL_S and live.RETRY_STREAM_S.
  const POLL_S = 10, RETRY_STREAM_S = 60;
  let pollTimer = null;
  function showLive(indicator, state) {
    indicator.textContent = t("live." + state, {seconds: POLL_S});
    indicator.className = "live " + state;
  }
  function poll(indicator) {
    if (pollTimer === null) pollTimer = setInterval(refreshAll, POLL_S * 1000);
    showLive(indicator, "polling");
    refreshAll();  // whatever happened while the stream was down
    setTimeout(connect, RETRY_STREAM_S * 1000);
  }

  function connect() {
    const indicator = document.getElementById("live");
    if (!indicator || !window.EventSource) return;
    const source = new EventSource(config.eventsUrl);
    source.addEventListener("open", () => {
      if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
      showLive(indicator, "on");
    });
    // Every (re)connection starts with the current id, so anything missed while away is fetched too.
    source.addEventListener("change", refreshAll);
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) poll(indicator);  // refused: no retry of its own
      else if (pollTimer === null) showLive(indicator, "off");  // dropped: EventSource retries itself
    });
    window.addEventListener("pagehide", () => source.close());
  }

  function csrfHeaders() {
    return {"X-CSRF-Token": config.csrf};
  }

  document.addEventListener("DOMContentLoaded", () => {
    tick();
    setInterval(tick, 1000);
    for (const el of document.querySelectorAll("[data-live-src][data-live-every]")) {
      setInterval(() => refresh(el), Number(el.dataset.liveEvery) * 1000);
    }
    if (soundButton && document.getElementById("live")) {
      showSoundState();
      soundButton.addEventListener("click", unlock);
      document.addEventListener("click", unlock, {once: true});
    }
    connect();
  });

  return {config, t, duration, announce, refreshAll, csrfHeaders};
})();
