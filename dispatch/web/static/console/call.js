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
  document.getElementById("geocode").addEventListener("click", async () => {
    const address = document.getElementById("address").value.trim();
    if (!address) return;
    result.textContent = "…";
    try {
      const url = script.dataset.geocodeUrl + "?address=" + encodeURIComponent(address);
      const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      const data = await response.json();
      if (!data.found) {
        result.textContent = Console.t("call.not_found");
        result.className = "small warn wide";
        return;
      }
      result.textContent = Console.t("call.found", {name: data.display_name, confidence: data.confidence});
      result.className = "small ok wide";
      result.dataset.lat = data.lat;
      result.dataset.lon = data.lon;
      if (map) {
        // A preview only: the address itself is logged and geocoded again by the server, so the
        // incident records "geocoded"; moving the pin afterwards makes it the operator's location.
        if (preview) preview.remove();
        preview = L.circle([data.lat, data.lon], {radius: 120, color: "#7c3aed", weight: 2, fillOpacity: 0.15}).addTo(map);
        map.setView([data.lat, data.lon], 15, {animate: false});
      }
    } catch (e) {
      result.textContent = String(e);
    }
  });
})();
