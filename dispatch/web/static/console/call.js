// The 112 call form: preview where the address geocodes to, and correct the location with the pin.
"use strict";

(() => {
  const script = document.getElementById("call-script");
  const latInput = document.getElementById("pin-lat"), lonInput = document.getElementById("pin-lon");
  const pinSource = document.getElementById("pin-source");
  const el = document.getElementById("call-map");
  let map = null, pin = null, preview = null;
  if (el && window.L) {
    map = ConsoleMap.create(el);
    // A pin set on the map is the operator's location (recorded as such), not the caller's handset fix.
    pin = ConsoleMap.pin(map, latInput, lonInput, () => { pinSource.value = "operator"; });
  }
  for (const input of [latInput, lonInput]) input.addEventListener("input", () => { pinSource.value = "handset"; });

  const result = document.getElementById("geocode-result");
  const choices = document.getElementById("geocode-choices");
  const warning = document.getElementById("geocode-warning");
  const buttons = document.getElementById("candidate-buttons");
  const chosen = document.getElementById("candidate-chosen");

  // The call-taker's choice among the candidates sets the form's pin, exactly as a click on the map
  // would: the call is logged at that place as the operator's location, so it is not "location needed".
  function choose(candidate, index) {
    if (pin) {
      pin.place(candidate.lat, candidate.lon, true);
    } else {
      latInput.value = candidate.lat.toFixed(6);
      lonInput.value = candidate.lon.toFixed(6);
      pinSource.value = "operator";
    }
    for (const button of buttons.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.candidate === String(index)));
    }
    chosen.textContent = Console.t("call.candidate_chosen", {name: ConsoleMap.candidateName(candidate)});
  }

  // When the parts of the address disagree: the warning, a button per place, and the places on the map.
  function showCandidates(data) {
    buttons.replaceChildren();
    chosen.textContent = "";
    const list = data.candidates || [];
    choices.hidden = list.length < 2;
    if (list.length < 2) return [];
    warning.textContent = data.warning;
    list.forEach((candidate, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "candidate-choice" + (candidate.picked ? " picked" : "");
      button.dataset.candidate = String(index);
      button.setAttribute("aria-pressed", "false");
      let text = Console.t("call.candidate_choose", {n: index + 1, name: ConsoleMap.candidateName(candidate)});
      if (candidate.picked) text += " · " + Console.t("call.candidate_pick");
      button.textContent = text;
      button.addEventListener("click", () => choose(candidate, index));
      buttons.appendChild(button);
    });
    if (map) preview = ConsoleMap.candidates(map, list, choose);
    return list.map((c) => [c.lat, c.lon]);
  }

  document.getElementById("geocode").addEventListener("click", async () => {
    const address = document.getElementById("address").value.trim();
    if (!address) return;
    result.textContent = "…";
    if (preview) { preview.remove(); preview = null; }
    try {
      const url = script.dataset.geocodeUrl + "?address=" + encodeURIComponent(address);
      const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      const data = await response.json();
      const places = showCandidates(data.found ? data : {});
      if (!data.found) {
        result.textContent = Console.t("call.not_found");
        result.className = "small warn wide";
        return;
      }
      result.textContent = Console.t("call.found", {name: data.display_name, confidence: data.confidence});
      // Found but not sure enough to send anyone there without a person choosing: not green.
      result.className = "small wide " + (data.auto_dispatch ? "ok" : "warn");
      result.dataset.lat = data.lat;
      result.dataset.lon = data.lon;
      if (map && places.length) {
        ConsoleMap.fit(map, places, 16, 80);
      } else if (map) {
        // A preview only: the address itself is logged and geocoded again by the server, so the
        // incident records "geocoded"; moving the pin afterwards makes it the operator's location.
        preview = L.circle([data.lat, data.lon], {radius: 120, color: "#7c3aed", weight: 2, fillOpacity: 0.15}).addTo(map);
        map.setView([data.lat, data.lon], 15, {animate: false});
      }
    } catch (e) {
      result.textContent = String(e);
    }
  });
})();
