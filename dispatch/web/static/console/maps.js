// Leaflet helpers shared by the map, incident and call pages. Tiles from console.tile_url (OpenStreetMap
// by default, or a self-hosted server); without one, or when its tiles fail to load, the map shows the
// city's bounds on a plain grid, says so, and still works offline.
"use strict";

const ConsoleMap = (() => {
  const SERVICE_COLORS = {police: "#1d4ed8", disaster: "#c2410c", ambulance: "#15803d"};

  function create(el, options) {
    const cfg = Console.config;
    const [south, west, north, east] = cfg.bounds;
    const map = L.map(el, Object.assign({zoomSnap: 0.5, attributionControl: Boolean(cfg.tileUrl)}, options || {}));
    let fallback = null;
    // The plain grid, with the city's bounds and a note saying why there is no basemap.
    function grid(message) {
      if (fallback) return;
      el.classList.add("no-tiles");
      el.dataset.tiles = "failed";
      fallback = L.rectangle([[south, west], [north, east]], {
        color: "#64748b", weight: 1, dashArray: "4 4", fill: false, interactive: false,
      }).addTo(map);
      const note = L.control({position: "bottomright"});
      note.onAdd = () => {
        const div = L.DomUtil.create("div", "map-note tiles-note");
        div.setAttribute("role", "status");
        div.textContent = message;
        return div;
      };
      note.addTo(map);
    }
    if (cfg.tileUrl) {
      const tiles = L.tileLayer(cfg.tileUrl, {attribution: cfg.tileAttribution || "", maxZoom: 19});
      let loaded = 0;
      tiles.on("tileload", () => { loaded += 1; el.dataset.tiles = "loaded"; });
      // Tiles that never load (no network, server down, blocked) must not leave a blank map: when a
      // tile fails before any has loaded, fall back to the grid and say so.
      tiles.on("tileerror", () => {
        if (loaded === 0) {
          tiles.remove();
          grid(Console.t("map.tiles_failed", {host: new URL(cfg.tileUrl.replace(/[{}]/g, "")).host}));
        }
      });
      tiles.addTo(map);
    } else {
      grid(Console.t("map.no_tiles"));
    }
    L.control.scale({metric: true, imperial: false}).addTo(map);
    map.fitBounds([[south, west], [north, east]], {animate: false});
    return map;
  }

  // Show every given point (and nothing much else); programmatic moves are not animated, so the
  // map is where it should be at once (and in screenshots).
  function fit(map, points, maxZoom, padding) {
    const present = points.filter((p) => p && p[0] !== null && p[1] !== null);
    if (!present.length) return;
    if (present.length === 1) map.setView(present[0], maxZoom || 16, {animate: false});
    else map.fitBounds(L.latLngBounds(present), {padding: [padding || 40, padding || 40], maxZoom: maxZoom || 16, animate: false});
  }

  // "Jl. Soekarno-Hatta (Kec. Kademangan)": a candidate as the warning, buttons and labels name it.
  function candidateName(c) {
    return c.area ? c.name + " (" + c.area + ")" : c.name;
  }

  // The places an address's disagreeing parts point to, the geocoder's pick first: numbered markers
  // (the pick in the preview's purple, the others orange), each labelled on the side away from the
  // others so no label covers another marker. A click on one calls choose(candidate, index).
  function candidates(map, list, choose) {
    const layer = L.layerGroup().addTo(map);
    const middle = list.reduce((sum, c) => sum + c.lat, 0) / list.length;
    list.forEach((c, i) => {
      const number = document.createElement("span");
      number.textContent = String(i + 1);
      const icon = L.divIcon({
        className: "candidate-marker" + (c.picked ? " picked" : ""), html: number, iconSize: [28, 28], iconAnchor: [14, 14],
      });
      const above = c.lat > middle || (c.lat === middle && i % 2 === 0);
      const marker = L.marker([c.lat, c.lon], {icon, title: candidateName(c), zIndexOffset: 500}).addTo(layer);
      marker.bindTooltip(document.createTextNode((i + 1) + " · " + candidateName(c)), {
        permanent: true, direction: above ? "top" : "bottom", offset: [0, above ? -14 : 14], className: "candidate-label",
      });
      marker.on("click", () => choose(c, i));
      const el = marker.getElement();
      if (el) el.dataset.candidate = String(i);
    });
    return layer;
  }

  function color(service) { return SERVICE_COLORS[service] || "#475569"; }

  function number(value) {
    const n = parseFloat(String(value || "").replace(",", "."));
    return Number.isFinite(n) ? n : null;
  }

  // A draggable pin bound to the #pin-lat / #pin-lon inputs; clicking the map moves it too.
  function pin(map, latInput, lonInput, onMove) {
    let marker = null;
    function place(lat, lon, fromMap) {
      if (!marker) {
        marker = L.marker([lat, lon], {draggable: true, autoPan: true}).addTo(map);
        marker.on("dragend", () => {
          const p = marker.getLatLng();
          place(p.lat, p.lng, true);
        });
      } else {
        marker.setLatLng([lat, lon]);
      }
      if (fromMap) {
        latInput.value = lat.toFixed(6);
        lonInput.value = lon.toFixed(6);
        if (onMove) onMove(lat, lon);
      }
    }
    map.on("click", (e) => place(e.latlng.lat, e.latlng.lng, true));
    const lat = number(latInput.value), lon = number(lonInput.value);
    if (lat !== null && lon !== null) {
      place(lat, lon, false);
      map.setView([lat, lon], 15, {animate: false});
    }
    for (const input of [latInput, lonInput]) {
      input.addEventListener("change", () => {
        const a = number(latInput.value), b = number(lonInput.value);
        if (a !== null && b !== null) { place(a, b, false); map.panTo([a, b], {animate: false}); }
      });
    }
    return {place, marker: () => marker};
  }

  return {create, color, number, pin, fit, candidates, candidateName};
})();
