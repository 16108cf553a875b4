// The incident page: a map with the incident's pin (drag it or click to move it) and its units.
"use strict";

(() => {
  const el = document.getElementById("incident-map");
  if (!el || !window.L) return;
  const map = ConsoleMap.create(el);
  const latInput = document.getElementById("pin-lat"), lonInput = document.getElementById("pin-lon");
  ConsoleMap.pin(map, latInput, lonInput);
  const points = [[ConsoleMap.number(latInput.value), ConsoleMap.number(lonInput.value)]];
  for (const unit of JSON.parse(el.dataset.units || "[]")) {
    L.circleMarker([unit.lat, unit.lon], {radius: 7, color: "#0f172a", weight: 2, fillColor: "#f8fafc", fillOpacity: 1})
      .bindTooltip(document.createTextNode(unit.id + " · " + Console.t("unit_status." + unit.status)), {permanent: true, direction: "right", className: "unit-label"})
      .addTo(map);
    points.push([unit.lat, unit.lon]);
  }
  // An address whose parts disagree: its places on the map; a click on one is its button's choice.
  const candidates = JSON.parse(el.dataset.candidates || "[]");
  if (candidates.length) {
    ConsoleMap.candidates(map, candidates, (c, i) => document.getElementById("candidate-" + i).requestSubmit());
    for (const c of candidates) points.push([c.lat, c.lon]);
  }
  ConsoleMap.fit(map, points, 16, candidates.length ? 60 : 40);
  // Keep the live part's state in the page title: a glance at the tab shows it.
  document.addEventListener("console:updated", () => {
    const state = document.getElementById("incident-state");
    if (state) document.body.dataset.incidentState = state.dataset.state;
  });
})();
