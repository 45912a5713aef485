// ferromq-bench report viewer: draws everything as inline SVG from the JSON
// embedded in the page. No network, no libraries.
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("bench-data").textContent);
  var COLORS = ["#2f5bea", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00", "#495057"];
  var SVGNS = "http://www.w3.org/2000/svg";
  var state = { metric: "measured", hidden: {}, tab: "summary", filter: "", logY: false };

  // "measured" charts what a scenario measures: what its consumers received,
  // or what its producers sent when it has no consumers (whose consumer
  // throughput is 0 by construction).
  var METRICS = {
    measured: { label: "Throughput (received; sent where no consumers)", unit: "rate", get: function (s, r) {
      return perSec(hasConsumers(s) ? s["consumer tp"] : s["producer tp"], r);
    } },
    consumer: { label: "Consumer throughput", unit: "rate", get: function (s, r) { return perSec(s["consumer tp"], r); } },
    producer: { label: "Producer throughput", unit: "rate", get: function (s, r) { return perSec(s["producer tp"], r); } },
    latency: { label: "Max latency", unit: "ns", get: function (s) { return s["max latency"] || []; } },
    p50: { label: "e2e latency p50", unit: "ns", get: function (s) { return s["e2e latency p50"] || []; } },
    p99: { label: "e2e latency p99", unit: "ns", get: function (s) { return s["e2e latency p99"] || []; } },
    receipt: { label: "Send→receipt p50", unit: "ns", get: function (s) { return s["receipt latency p50"] || []; } },
    errors: { label: "Errors", unit: "errors", get: function (s, r) { return perSec(s.errors, r); } }
  };

  function hasConsumers(s) { return !s.parameters || s.parameters.consumers !== 0; }

  function perSec(values, run) {
    var ms = (run.settings && run.settings.sample_interval_ms) || 1000;
    return (values || []).map(function (v) { return v * 1000 / ms; });
  }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setAttrs(e, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "onclick") e.addEventListener("click", attrs[k]);
      else e.setAttribute(k, attrs[k]);
    });
  }

  function fmtValue(v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "-";
    if (unit === "ns") {
      if (v >= 1e9) return (v / 1e9).toFixed(2) + " s";
      if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e8 ? 0 : 1) + " ms";
      if (v >= 1e3) return (v / 1e3).toFixed(0) + " µs";
      return v.toFixed(0) + " ns";
    }
    var s;
    if (v >= 1e6) s = (v / 1e6).toFixed(2) + "M";
    else if (v >= 1e4) s = (v / 1e3).toFixed(1) + "k";
    else if (v >= 1e3) s = (v / 1e3).toFixed(2) + "k";
    else s = (Math.round(v * 10) / 10).toString();
    return unit === "rate" ? s + " msg/s" : unit === "errors" ? s + " err/s" : s;
  }
  function fmtAxis(v, unit) {
    if (v === 0) return "0";
    return fmtValue(v, unit).replace(" msg/s", "").replace(" err/s", "");
  }

  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    var pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }
  function boxStats(values) {
    var s = values.slice().sort(function (a, b) { return a - b; });
    return { min: s[0], q1: quantile(s, 0.25), med: quantile(s, 0.5), q3: quantile(s, 0.75), max: s[s.length - 1], n: s.length };
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    var step = m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10;
    return step * p;
  }

  // A y scale over `values` mapping to pixels [top, bottom]: linear from 0,
  // or logarithmic by decades (values <= 0 sit on the floor).
  function yScale(values, top, bottom, log) {
    var max = Math.max.apply(null, values.concat([0]));
    if (log) {
      var pos = values.filter(function (v) { return v > 0; });
      if (pos.length) {
        var lo = Math.pow(10, Math.floor(Math.log10(Math.min.apply(null, pos))));
        var hi = Math.pow(10, Math.ceil(Math.log10(max)));
        if (hi <= lo) hi = lo * 10;
        var ticks = [];
        for (var d = lo; d <= hi * 1.0001; d *= 10) ticks.push(d);
        return { ticks: ticks, y: function (v) {
          var f = (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
          return top + (bottom - top) * (1 - f);
        } };
      }
    }
    var m = niceMax(max);
    return { ticks: [0, m / 4, m / 2, 3 * m / 4, m], y: function (v) { return top + (bottom - top) * (1 - v / m); } };
  }

  function visibleRuns() {
    return DATA.runs.map(function (r, i) { return { run: r, index: i }; }).filter(function (x) { return !state.hidden[x.index]; });
  }

  // Key of a scenario's parameters, for matching the same scenario across runs.
  function paramKey(p) {
    return Object.keys(p).sort().map(function (k) { return k + "=" + JSON.stringify(p[k]); }).join(",");
  }
  function scenarioName(s) {
    if (s.name) return s.name;
    var p = s.parameters;
    return p.group + "/" + p.mode + "-" + (p.persistent ? "p" : "np") + "-" + p.producers + "p" + p.destination_count + "d" +
      p.consumers + "c-" + p.message_size + "b-tx" + p.tx_size + (p.producer_rate ? "-" + p.producer_rate + "ps" : "");
  }

  // Every distinct scenario over all runs, in first-seen order.
  var SCENARIOS = (function () {
    var seen = {}, out = [];
    DATA.runs.forEach(function (run, ri) {
      (run.scenarios || []).forEach(function (s) {
        var k = paramKey(s.parameters);
        if (!seen[k]) { seen[k] = { key: k, name: scenarioName(s), parameters: s.parameters, byRun: {} }; out.push(seen[k]); }
        seen[k].byRun[ri] = s;
      });
    });
    return out;
  })();

  function frame(width, height) {
    return svgEl("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img" });
  }

  // Box-and-whisker chart: categories on x, one box per run per category.
  function boxChart(categories, series, unit) {
    var W = 420, H = 230, L = 62, R = 10, T = 10, B = 36;
    var svg = frame(W, H);
    var values = [];
    series.forEach(function (s) { s.boxes.forEach(function (b) { if (b) values.push(b.min, b.max); }); });
    var scale = yScale(values, T, H - B, state.logY);
    var y = scale.y;
    scale.ticks.forEach(function (v) {
      svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "gridline" }));
      svg.appendChild(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtAxis(v, unit)));
    });
    svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, "class": "axis" }));
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis" }));
    var slot = (W - L - R) / Math.max(categories.length, 1);
    var bw = Math.min(26, (slot - 10) / Math.max(series.length, 1));
    categories.forEach(function (c, ci) {
      var cx = L + slot * (ci + 0.5);
      svg.appendChild(svgEl("text", { x: cx, y: H - B + 15, "text-anchor": "middle" }, String(c)));
      series.forEach(function (s, si) {
        var b = s.boxes[ci];
        if (!b) return;
        var x = cx - (series.length * bw) / 2 + si * bw + 2, w = bw - 4, mid = x + w / 2;
        var g = svgEl("g", {});
        g.appendChild(svgEl("title", {}, s.label + " @ " + c + "\nmedian " + fmtValue(b.med, unit) + "\nmin " + fmtValue(b.min, unit) +
          "  p25 " + fmtValue(b.q1, unit) + "  p75 " + fmtValue(b.q3, unit) + "  max " + fmtValue(b.max, unit) + "\n" + b.n + " samples"));
        g.appendChild(svgEl("line", { x1: mid, x2: mid, y1: y(b.max), y2: y(b.min), stroke: s.color, "stroke-width": 1 }));
        g.appendChild(svgEl("line", { x1: x + 2, x2: x + w - 2, y1: y(b.max), y2: y(b.max), stroke: s.color }));
        g.appendChild(svgEl("line", { x1: x + 2, x2: x + w - 2, y1: y(b.min), y2: y(b.min), stroke: s.color }));
        g.appendChild(svgEl("rect", { x: x, y: y(b.q3), width: w, height: Math.max(1, y(b.q1) - y(b.q3)), fill: s.color, "fill-opacity": 0.25, stroke: s.color }));
        g.appendChild(svgEl("line", { x1: x, x2: x + w, y1: y(b.med), y2: y(b.med), stroke: s.color, "stroke-width": 2.5 }));
        svg.appendChild(g);
      });
    });
    return svg;
  }

  // Line chart: numeric x, one polyline per series. opts.logX/logY, opts.xTicks.
  function lineChart(series, opts) {
    var W = opts.width || 420, H = opts.height || 220, L = 62, R = 12, T = 10, B = 32;
    var svg = frame(W, H);
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    if (!xs.length) return null;
    var xmin = Math.min.apply(null, xs), xmax = Math.max.apply(null, xs);
    if (xmax === xmin) xmax = xmin + 1;
    var ymin, ymax, y;
    if (opts.logY) {
      var pos = ys.filter(function (v) { return v > 0; });
      if (!pos.length) return null;
      ymin = Math.pow(10, Math.floor(Math.log10(Math.min.apply(null, pos))));
      ymax = Math.pow(10, Math.ceil(Math.log10(Math.max.apply(null, pos))));
      if (ymax === ymin) ymax = ymin * 10;
      y = function (v) { return T + (H - T - B) * (1 - (Math.log10(Math.max(v, ymin)) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))); };
      for (var d = ymin; d <= ymax * 1.0001; d *= 10) {
        svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(d), y2: y(d), "class": "gridline" }));
        svg.appendChild(svgEl("text", { x: L - 6, y: y(d) + 4, "text-anchor": "end" }, fmtAxis(d, opts.unit)));
      }
    } else {
      var scale = yScale(ys, T, H - B, state.logY);
      y = scale.y;
      scale.ticks.forEach(function (v) {
        svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "gridline" }));
        svg.appendChild(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtAxis(v, opts.unit)));
      });
    }
    var x = function (v) { return L + (W - L - R) * (v - xmin) / (xmax - xmin); };
    (opts.xTicks || [xmin, (xmin + xmax) / 2, xmax]).forEach(function (t) {
      var tv = typeof t === "object" ? t[0] : t, label = typeof t === "object" ? t[1] : (Math.round(tv * 10) / 10) + (opts.xUnit || "");
      svg.appendChild(svgEl("text", { x: x(tv), y: H - B + 15, "text-anchor": "middle" }, label));
    });
    if (opts.xLabel) svg.appendChild(svgEl("text", { x: W - R, y: H - 4, "text-anchor": "end" }, opts.xLabel));
    svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, "class": "axis" }));
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis" }));
    series.forEach(function (s) {
      var pts = s.points.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" ");
      var line = { points: pts, fill: "none", stroke: s.color, "stroke-width": 2 };
      if (s.dash) line["stroke-dasharray"] = "5 3";
      svg.appendChild(svgEl("polyline", line));
      s.points.forEach(function (p) {
        var c = svgEl("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.6, fill: s.color });
        c.appendChild(svgEl("title", {}, s.label + ": " + (p[2] || p[0]) + " → " + fmtValue(p[1], opts.unit)));
        svg.appendChild(c);
      });
    });
    return svg;
  }

  function card(title, sub, body, onclick) {
    var c = el("div", { "class": "card" + (onclick ? " clickable" : "") }, [el("h4", { text: title })]);
    if (sub) c.appendChild(el("div", { "class": "sub", text: sub }));
    c.appendChild(body || el("div", { "class": "empty", text: "no data" }));
    if (onclick) c.addEventListener("click", onclick);
    return c;
  }

  // ---- Summary: the original viewer's parameter sweeps --------------------
  var BASE = { producers: 1, destination_count: 1, consumers: 1, message_size: 10, tx_size: 0 };
  var SWEEPS = [
    { title: "throughput as you scale message size", vary: ["message_size"], label: function (p) { return sizeLabel(p.message_size); } },
    { title: "throughput as you scale producers", vary: ["producers"], label: function (p) { return p.producers; } },
    { title: "throughput as you scale consumers", vary: ["consumers"], label: function (p) { return p.consumers; } },
    { title: "throughput as you scale the consumers and producers", vary: ["producers", "consumers"], equal: ["producers", "consumers"], label: function (p) { return p.producers; } },
    { title: "throughput as you scale transaction size", vary: ["tx_size"], label: function (p) { return p.tx_size; } },
    { title: "throughput as you scale the number destinations used", vary: ["producers", "consumers", "destination_count"], equal: ["producers", "consumers", "destination_count"], label: function (p) { return p.destination_count; } }
  ];
  function sizeLabel(b) { return b >= 1e6 ? b / 1e6 + " MB" : b >= 1e3 ? b / 1e3 + " KB" : b + " B"; }

  function sweepMatches(sw, p) {
    var ok = Object.keys(BASE).every(function (k) { return sw.vary.indexOf(k) >= 0 || p[k] === BASE[k]; });
    if (!ok) return false;
    if (sw.equal) { var v = p[sw.equal[0]]; if (!sw.equal.every(function (k) { return p[k] === v; })) return false; }
    return true;
  }

  function chartFor(list, labelOf, sortKey) {
    list.sort(function (a, b) { return sortKey(a.parameters) - sortKey(b.parameters); });
    var cats = list.map(function (sc) { return labelOf(sc.parameters); });
    var m = METRICS[state.metric];
    var series = visibleRuns().map(function (x) {
      return {
        label: x.run.label, color: COLORS[x.index % COLORS.length],
        boxes: list.map(function (sc) { var s = sc.byRun[x.index]; var v = s ? m.get(s, x.run) : []; return v.length ? boxStats(v) : null; })
      };
    });
    return boxChart(cats, series, m.unit);
  }

  function renderSummary(root) {
    var sections = {};
    SCENARIOS.forEach(function (sc) {
      var p = sc.parameters;
      var key = (p.persistent ? "Persistent" : "Non-Persistent") + (p.durable ? " (durable)" : "");
      (sections[key] = sections[key] || []).push(sc);
    });
    var any = false;
    ["Non-Persistent", "Persistent", "Non-Persistent (durable)", "Persistent (durable)"].forEach(function (secName) {
      var list = sections[secName];
      if (!list) return;
      var det = el("details", { "class": "section", open: "open" }, [el("summary", { text: secName + " Scenarios" })]);
      ["queue", "topic"].forEach(function (mode) {
        var grid = el("div", { "class": "grid" });
        var inMode = list.filter(function (sc) { return sc.parameters.mode === mode; });
        if (mode === "queue") {
          var lat = inMode.filter(function (sc) { return sc.parameters.group === "latency" && sc.parameters.producer_rate; });
          if (lat.length) {
            var saved = state.metric;
            if (METRICS[state.metric].unit !== "ns") state.metric = "latency";
            var chart = chartFor(lat, function (p) { return fmtAxis(p.producer_rate, "rate"); }, function (p) { return p.producer_rate; });
            var shown = METRICS[state.metric].label;
            state.metric = saved;
            grid.appendChild(card("Queue latency as you scale producer throughput", shown + " per sample, x = requested msg/s", chart,
              function () { showDetails("latency/"); }));
          }
        }
        SWEEPS.forEach(function (sw) {
          var pts = inMode.filter(function (sc) { return sc.parameters.group === "throughput" && sweepMatches(sw, sc.parameters); });
          if (pts.length < 2) return;
          var chart = chartFor(pts, sw.label, function (p) { return p[sw.vary[sw.vary.length - 1]] + p[sw.vary[0]]; });
          var title = (mode === "queue" ? "Queue " : "Topic ") + sw.title;
          grid.appendChild(card(title, METRICS[state.metric].label + " per 1 s sample (box: min, p25, median, p75, max)", chart,
            function () { showDetails(mode + "-" + (secName.indexOf("Non") === 0 ? "np" : "p")); }));
        });
        if (grid.childNodes.length) {
          det.appendChild(el("h3", { text: mode === "queue" ? "Queue" : "Topic" }));
          det.appendChild(grid);
        }
      });
      // A section without a single chart (ad-hoc runs have no sweeps) is not shown.
      if (det.getElementsByClassName("grid").length) {
        any = true;
        root.appendChild(det);
      }
    });
    // Scenarios outside the sweeps (other groups, custom, quick) as one box each.
    var others = SCENARIOS.filter(function (sc) {
      var p = sc.parameters;
      if (p.group === "latency" && p.mode === "queue") return false;
      if (p.group !== "throughput") return true;
      var inSweep = SWEEPS.some(function (sw) {
        if (!sweepMatches(sw, p)) return false;
        return SCENARIOS.filter(function (o) {
          return o.parameters.group === "throughput" && o.parameters.mode === p.mode && o.parameters.persistent === p.persistent &&
            !!o.parameters.durable === !!p.durable && sweepMatches(sw, o.parameters);
        }).length >= 2;
      });
      return !inSweep;
    });
    if (others.length) {
      any = true;
      root.appendChild(el("h2", { text: "Other scenarios" }));
      root.appendChild(el("p", { "class": "sub", text: "One chart per scenario, each on its own scale (scenarios differ by orders of magnitude); the brokers side by side within it." }));
      var grid = el("div", { "class": "grid" });
      others.forEach(function (sc) {
        var m = METRICS[state.metric];
        var series = visibleRuns().map(function (x) {
          var s = sc.byRun[x.index], v = s ? m.get(s, x.run) : [];
          return { label: x.run.label, color: COLORS[x.index % COLORS.length], boxes: [v.length ? boxStats(v) : null] };
        });
        var what = m.label;
        if (state.metric === "measured") what = sc.parameters.consumers === 0 ? "Producer throughput (no consumers)" : "Consumer throughput";
        var axis = state.metric !== "measured" ? m.label : sc.parameters.consumers === 0 ? "sent (no consumers)" : "received";
        var chart = boxChart([axis], series, m.unit);
        var medians = series.filter(function (x) { return x.boxes[0]; }).map(function (x) { return x.label + " " + fmtValue(x.boxes[0].med, m.unit); }).join(" · ");
        grid.appendChild(card(sc.name, what + " per sample; median " + medians, chart, function () { showDetails(sc.name); }));
      });
      root.appendChild(grid);
    }
    if (!any) root.appendChild(el("p", { "class": "empty", text: "No scenarios in these results." }));
  }

  // ---- Details: time series per scenario ----------------------------------
  function renderDetails(root) {
    var box = el("input", { type: "search", placeholder: "filter scenarios, e.g. queue-p- or 10p10d10c", value: state.filter });
    box.addEventListener("input", function () { state.filter = box.value; drawDetailGrid(grid); });
    root.appendChild(el("div", { "class": "filter" }, [box]));
    var grid = el("div", { "class": "grid" });
    root.appendChild(grid);
    drawDetailGrid(grid);
  }
  function drawDetailGrid(grid) {
    while (grid.firstChild) grid.removeChild(grid.firstChild);
    var m = METRICS[state.metric];
    SCENARIOS.filter(function (sc) { return sc.name.indexOf(state.filter) >= 0; }).forEach(function (sc) {
      var series = visibleRuns().filter(function (x) { return sc.byRun[x.index]; }).map(function (x) {
        var s = sc.byRun[x.index], ms = (x.run.settings && x.run.settings.sample_interval_ms) || 1000;
        var vals = m.get(s, x.run);
        return { label: x.run.label, color: COLORS[x.index % COLORS.length],
          points: vals.map(function (v, i) { return [(i + 1) * ms / 1000, v, "t=" + ((i + 1) * ms / 1000) + " s"]; }) };
      });
      var chart = lineChart(series, { unit: m.unit, xUnit: " s", xLabel: "seconds" });
      var sub = visibleRuns().filter(function (x) { return sc.byRun[x.index]; }).map(function (x) {
        var v = m.get(sc.byRun[x.index], x.run).slice().sort(function (a, b) { return a - b; });
        return x.run.label + ": median " + fmtValue(quantile(v, 0.5), m.unit);
      }).join(" · ");
      var gaps = gapTable(sc);
      grid.appendChild(card(sc.name, sub, gaps ? el("div", {}, [chart, gaps]) : chart));
    });
    if (!grid.childNodes.length) grid.appendChild(el("p", { "class": "empty", text: "No scenario matches." }));
  }

  // Failover gaps: every interval without a receipt of at least gap_min_ms,
  // per run, with the wall-clock times of its ends (to match a kill log).
  function gapTable(sc) {
    var runs = visibleRuns().filter(function (x) { var s = sc.byRun[x.index]; return s && s.failover && (s.failover.gaps.length || s.failover.redirects); });
    if (!runs.length) return null;
    var table = el("table", { "class": "lat gaps" }, [el("tr", {}, ["run", "gap", "from", "to", "longest", "redirects", "resent"].map(function (h) { return el("th", { text: h }); }))]);
    runs.forEach(function (x) {
      var f = sc.byRun[x.index].failover;
      var rows = f.gaps.length ? f.gaps : [null];
      rows.forEach(function (g, i) {
        var when = function (ms) { return new Date(ms).toISOString().substr(11, 12); };
        var cells = [x.run.label,
          g ? fmtValue(g.ms * 1e6, "ns") + (g.open ? " (open)" : "") : "none ≥ " + f.gap_min_ms + " ms",
          g ? when(g.start_unix_ms) : "", g ? when(g.end_unix_ms) : "",
          i === 0 ? fmtValue(f.longest_gap_ms * 1e6, "ns") : "", i === 0 ? String(f.redirects) : "", i === 0 ? String(f.resent) : ""];
        table.appendChild(el("tr", {}, cells.map(function (v) { return el("td", { text: v }); })));
      });
    });
    return el("div", { "class": "scroll" }, [el("p", { "class": "sub", text: "Receipt gaps (failover): intervals without any RECEIPT, UTC" }), table]);
  }

  // ---- Latency: percentile curves from the HDR histograms -----------------
  var PTICKS = [[0, "0%"], [1, "90%"], [2, "99%"], [3, "99.9%"], [4, "99.99%"], [5, "99.999%"]];
  function pctX(p) { return p >= 100 ? 5.3 : Math.min(5.3, -Math.log10(1 - p / 100)); }
  function renderLatency(root) {
    root.appendChild(el("p", { "class": "sub", text: "End-to-end latency by percentile (HDR histogram over all samples; fixed-rate scenarios measure from the intended send time). Log scales; the right end is the maximum." }));
    var grid = el("div", { "class": "grid" });
    root.appendChild(grid);
    SCENARIOS.forEach(function (sc) {
      var runs = visibleRuns().filter(function (x) { var s = sc.byRun[x.index]; return s && s.latency_hdr && s.latency_hdr.e2e.count > 0; });
      if (!runs.length) return;
      var series = [];
      runs.forEach(function (x) {
        var h = sc.byRun[x.index].latency_hdr, color = COLORS[x.index % COLORS.length];
        series.push({ label: x.run.label + " e2e", color: color, points: h.e2e_percentiles.map(function (pv) { return [pctX(pv[0]), pv[1], "p" + pv[0]]; }) });
        if (h.receipt.count > 0) series.push({ label: x.run.label + " receipt", color: color, dash: true, points: h.receipt_percentiles.map(function (pv) { return [pctX(pv[0]), pv[1], "p" + pv[0]]; }) });
      });
      var chart = lineChart(series, { unit: "ns", logY: true, xTicks: PTICKS });
      var table = el("table", { "class": "lat" }, [el("tr", {}, ["run", "p50", "p90", "p99", "p99.9", "max", "rcpt p50", "rcpt p99"].map(function (h) { return el("th", { text: h }); }))]);
      runs.forEach(function (x) {
        var h = sc.byRun[x.index].latency_hdr, e = h.e2e, r = h.receipt;
        var cells = [x.run.label, e.p50, e.p90, e.p99, e.p999, e.max, r.count ? r.p50 : NaN, r.count ? r.p99 : NaN];
        table.appendChild(el("tr", {}, cells.map(function (v, i) { return el("td", { text: i === 0 ? v : fmtValue(v, "ns") }); })));
      });
      var hasReceipt = runs.some(function (x) { return sc.byRun[x.index].latency_hdr.receipt.count > 0; });
      var sub = hasReceipt ? "solid: end-to-end · dashed: send→receipt" : "end-to-end";
      grid.appendChild(card(sc.name, sub, el("div", {}, [chart, el("div", { "class": "scroll" }, [table])])));
    });
    if (!grid.childNodes.length) grid.appendChild(el("p", { "class": "empty", text: "These results carry no HDR latency data (files from the original JMS Benchmark have only max latency)." }));
  }

  // ---- Page shell -----------------------------------------------------------
  function showDetails(filter) { state.filter = filter; state.tab = "details"; render(); window.scrollTo(0, 0); }

  function renderHeader() {
    var h = document.getElementById("header");
    while (h.firstChild) h.removeChild(h.firstChild);
    h.appendChild(el("h1", { text: DATA.title }));
    var runs = el("div", { "class": "runs" });
    DATA.runs.forEach(function (r, i) {
      var box = el("input", { type: "checkbox" });
      box.checked = !state.hidden[i];
      box.addEventListener("change", function () { state.hidden[i] = !box.checked; render(); });
      var s = r.settings || {};
      runs.appendChild(el("label", { "class": "run" }, [box, el("span", { "class": "chip", style: "background:" + COLORS[i % COLORS.length] }),
        el("b", { text: r.label }), el("small", { text: (s.url || "") + " · " + (r.scenarios || []).length + " scenarios" + (s.suite ? " · " + s.suite : "") })]));
    });
    h.appendChild(runs);
    var controls = el("div", { "class": "controls" }, [el("span", { text: "Metric:" })]);
    Object.keys(METRICS).forEach(function (k) {
      var radio = el("input", { type: "radio", name: "metric", value: k });
      radio.checked = state.metric === k;
      radio.addEventListener("change", function () { state.metric = k; render(); });
      controls.appendChild(el("label", {}, [radio, " " + METRICS[k].label]));
    });
    var logBox = el("input", { type: "checkbox" });
    logBox.checked = state.logY;
    logBox.addEventListener("change", function () { state.logY = logBox.checked; render(); });
    controls.appendChild(el("label", { style: "margin-left:12px" }, [logBox, " Log scale"]));
    h.appendChild(controls);
    var tabs = el("div", { "class": "tabs" });
    [["summary", "Summary"], ["details", "Details"], ["latency", "Latency percentiles"]].forEach(function (t) {
      tabs.appendChild(el("button", { "class": state.tab === t[0] ? "active" : "", "data-tab": t[0], text: t[1],
        onclick: function () { state.tab = t[0]; history.replaceState(null, "", "#" + t[0]); render(); } }));
    });
    h.appendChild(tabs);
  }

  function render() {
    renderHeader();
    var root = document.getElementById("content");
    while (root.firstChild) root.removeChild(root.firstChild);
    if (state.tab === "summary") renderSummary(root);
    else if (state.tab === "details") renderDetails(root);
    else renderLatency(root);
  }

  // `#details`, `#latency`, `#summary&log`: open a tab, optionally with log scales.
  (window.location.hash || "").replace("#", "").split("&").forEach(function (word) {
    if (word === "details" || word === "latency" || word === "summary") state.tab = word;
    if (word === "log") state.logY = true;
  });

  try {
    render();
    document.body.dataset.rendered = "ok";
  } catch (err) {
    document.body.dataset.rendered = "error";
    document.getElementById("content").appendChild(el("pre", { "class": "error", text: "Report failed to render: " + (err && err.stack || err) }));
    throw err;
  }
})();
