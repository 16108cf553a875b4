// The map page: open incidents, units (with the age of their position) and panic buttons (with health).
"use strict";

(() => {
  const el = document.getElementById("big-map");
  if (!el || !window.L) return;
  const map = ConsoleMap.create(el);
  const layers = {incidents: L.layerGroup().addTo(map), units: L.layerGroup().addTo(map), devices: L.layerGroup().addTo(map)};
  L.control.layers(null, {
    [Console.t("map.incidents")]: layers.incidents,
    [Console.t("map.units")]: layers.units,
    [Console.t("map.devices")]: layers.devices,
  }, {collapsed: false}).addTo(map);

  // Leaflet puts string content in as HTML: names come from the roster, so they go in as text.
  function text(...lines) {
    const span = document.createElement("span");
    lines.forEach((line, i) => { if (i) span.append(document.createElement("br")); span.append(String(line)); });
    return span;
  }

  function incidentUrl(id) { return el.dataset.incidentUrl.replace(/0$/, String(id)); }

  const legend = L.control({position: "bottomleft"});
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "map-note legend");
    div.innerHTML = '<span class="svc svc-police"></span><span class="svc svc-disaster"></span><span class="svc svc-ambulance"></span> ';
    div.append(document.createTextNode(Console.t("map.legend")));
    for (const [i, name] of ["police", "disaster", "ambulance"].entries()) div.children[i].title = name;
    return div;
  };
  legend.addTo(map);
  let fitted = false;

  // Every label is a hover tooltip (sticky to the pointer), so labels never cover each other or the
  // markers under them; an unanswered incident says so in its marker (large, red, pulsing).
  function draw(data) {
    Object.values(layers).forEach((layer) => layer.clearLayers());
    const units = new Map(data.units.map((u) => [u.id, u]));
    for (const d of data.devices) {
      const bad = d.silent || d.low_battery;
      L.circleMarker([d.lat, d.lon], {radius: 4, weight: bad ? 2 : 1, color: bad ? "#b91c1c" : "#64748b",
        fillColor: "#e2e8f0", fillOpacity: 1, className: "device-marker"})
        .bindTooltip(text(d.id + " · " + d.owner_name + (d.silent ? " · " + Console.t("devices.silent") : "") +
          (d.low_battery ? " · " + Console.t("devices.low_battery") + " " + d.battery + " %" : "")), {sticky: true})
        .addTo(layers.devices);
    }
    for (const i of data.incidents) {
      // A line from each unit paged (dashed) or on its way (solid) to the incident.
      for (const r of i.units) {
        const u = units.get(r.unit_id);
        if (!u) continue;
        L.polyline([[u.lat, u.lon], [i.lat, i.lon]], {color: ConsoleMap.color(r.service), weight: 2, opacity: 0.8,
          dashArray: r.state === "active" ? "6 6" : null, interactive: false,
          className: "response-line response-" + r.state}).addTo(layers.incidents);
      }
    }
    for (const u of data.units) {
      if (!u.active) continue;
      const age = u.fix_age_s === null ? "—" : Console.duration(u.fix_age_s);
      L.circleMarker([u.lat, u.lon], {radius: 7, weight: 2, color: ConsoleMap.color(u.service),
        fillColor: u.status === "available" ? ConsoleMap.color(u.service) : "#ffffff", fillOpacity: 0.9,
        className: "unit-marker"})
        .bindTooltip(text(u.id + " · " + u.name, Console.t("unit_status." + u.status) + " · " + Console.t("map.fix_age") + ": " + age),
          {sticky: true, className: "unit-label"})
        .addTo(layers.units);
    }
    for (const i of data.incidents) {
      const services = i.services.length ? i.services : [i.service];
      const marker = L.circleMarker([i.lat, i.lon], {
        radius: i.unanswered ? 15 : 10, weight: i.unanswered ? 5 : 3,
        color: i.unanswered ? "#b91c1c" : ConsoleMap.color(services[0]),
        fillColor: i.unanswered ? "#fca5a5" : "#ffffff", fillOpacity: 0.95,
        className: "incident-marker state-" + i.state + (i.unanswered ? " unanswered" : ""),
      });
      const lines = ["#" + i.id + " · " + Console.t("state." + i.state)];
      for (const r of i.units) lines.push(r.unit_id + " · " + Console.t("assignment." + r.state));
      marker.bindTooltip(text(...lines), {sticky: true, className: "incident-label"})
        .on("click", () => { window.location.href = incidentUrl(i.id); })
        .addTo(layers.incidents);
    }
    if (!fitted) {
      // First load: frame what is there; later refreshes keep the dispatcher's own view.
      fitted = true;
      ConsoleMap.fit(map, [...data.incidents, ...data.units.filter((u) => u.active)].map((p) => [p.lat, p.lon]), 15);
    }
    el.dataset.loaded = String(data.incidents.length);
  }

  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(el.dataset.src, {credentials: "same-origin", cache: "no-store"});
      if (response.ok) draw(await response.json());
    } finally {
      busy = false;
    }
  }
  document.addEventListener("console:change", load);
  setInterval(load, 10000);
  load();
})();
