// xensim explore page: one schedule as swimlanes, a lane per CPU, each atomic step a box;
// the shared words beneath at the current step (data: #data, made by xensim/pages/_race.py;
// every text shown was decoded there).
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var steps = D.steps, N = steps.length, T = D.texts, K = D.keys, cur = 0;
  var V = D.violation, vstep = V ? (V.step === null ? N - 1 : V.step) : -1;
  var $ = function (id) { return document.getElementById(id); };
  var esc = window.xensimPage.esc;
  var isSp = steps.map(function (st) {
    return st[3] !== null || st[2].some(function (c) { return K[c[0]].sp === undefined &&
                                                               /^superpage/.test(K[c[0]].label); });
  });

  // the shared words after step i: superpage words and frames by key, the superpages' frames
  function state(i) {
    var val = {}, sps = D.spages.map(function (s) { return {ci: s.ci.slice(), ti: s.ti.slice()}; });
    Object.keys(D.init).forEach(function (k) { val[k] = D.init[k]; });
    for (var j = 0; j <= i; j++) {
      steps[j][2].forEach(function (c) {
        var key = K[c[0]];
        if (key.sp !== undefined) sps[key.sp][key.w][key.off] = c[1];
        else val[c[0]] = c[1];
      });
    }
    return {val: val, sps: sps};
  }
  function histogram(ids) {
    var n = {};
    ids.forEach(function (v) { n[v] = (n[v] || 0) + 1; });
    var ks = Object.keys(n).sort(function (a, b) { return n[b] - n[a]; });
    var out = ks.slice(0, 3).map(function (v) { return n[v] + " x " + T[v]; });
    if (ks.length > 3) out.push("+" + (ks.length - 3) + " more kinds");
    return out.join("; ");
  }

  function box(i) {
    var st = steps[i], line = T[st[1][0]] || "(no line)", cls = "box";
    if (st[3]) cls += st[3][3] ? " won" : " lost";
    if (i === vstep) cls += " viol";
    if (i === cur) cls += " now";
    var more = st[1].length > 1 ? "<br>" + esc(T[st[1][1]]) : "";
    return '<div class="' + cls + '" data-i="' + i + '" title="' + esc(st[1].map(function (t) {
      return T[t]; }).join("\n")) + '">' + (i + 1) + ": " + esc(line.replace(/^cpu\d+:? /, "")) +
      more + "</div>";
  }
  function lanes() {
    var lo = Math.max(0, Math.min(cur - 4, N - 9)), hi = Math.min(N, lo + 9);
    var cols = hi - lo, out = [];
    $("lanes").style.gridTemplateColumns = "4em repeat(" + cols + ", minmax(0, 1fr))";
    for (var c = 0; c < D.cpus; c++) {
      out.push('<div class="lane-name">cpu' + c + "</div>");
      for (var i = lo; i < hi; i++)
        out.push(steps[i][0] === c ? box(i) : '<div class="box empty"></div>');
    }
    $("lanes").innerHTML = out.join("");
  }
  function words() {
    var s = state(cur), changed = {}, spChanged = {};
    steps[cur][2].forEach(function (c) {
      changed[c[0]] = true;
      if (K[c[0]].sp !== undefined) spChanged[K[c[0]].sp] = K[c[0]];
    });
    var rows = ["<tr><th>word</th><th>after step " + (cur + 1) + "</th></tr>"];
    D.spages.forEach(function (sp, j) {
      K.forEach(function (k, i) {
        if (k.sp === undefined && k.label.indexOf("superpage mfn 0x" + sp.base.toString(16) + " ") === 0)
          rows.push("<tr><td>" + esc(k.label) + "</td><td" + (changed[i] ? ' class="chg"' : "") +
                    ">" + esc(s.val[i] !== undefined ? T[s.val[i]] : "-") + "</td></tr>");
      });
      var f = spChanged[j];
      rows.push("<tr><td>superpage " + esc(sp.label) + ": its 512 frames' count_info</td><td" +
                (f && f.w === "ci" ? ' class="chg"' : "") + ">" + esc(histogram(s.sps[j].ci)) +
                (f && f.w === "ci" ? " (mfn 0x" + (sp.base + f.off).toString(16) + ")" : "") + "</td></tr>");
      rows.push("<tr><td>superpage " + esc(sp.label) + ": its 512 frames' type_info</td><td" +
                (f && f.w === "ti" ? ' class="chg"' : "") + ">" + esc(histogram(s.sps[j].ti)) +
                (f && f.w === "ti" ? " (mfn 0x" + (sp.base + f.off).toString(16) + ")" : "") + "</td></tr>");
    });
    K.forEach(function (k, i) {
      if (k.sp !== undefined || /^superpage/.test(k.label) || s.val[i] === undefined) return;
      rows.push("<tr><td>" + esc(k.label) + "</td><td" + (changed[i] ? ' class="chg"' : "") +
                ">" + esc(T[s.val[i]]) + "</td></tr>");
    });
    $("words").innerHTML = rows.join("");
  }
  function casPanel() {
    var c = steps[cur][3];
    document.body.setAttribute("data-cas", c ? (c[3] ? "won" : "lost") : "");
    if (!c) { $("cas").innerHTML = ""; return; }
    $("cas").innerHTML = '<table class="w"><tr><th>cmpxchg</th><th>expected</th><th>found</th>' +
      "<th>new</th><th></th></tr><tr><td>cpu" + steps[cur][0] + "</td><td>" + esc(c[0]) +
      " (" + c[4] + ")</td><td>" + esc(c[1]) + " (" + c[5] + ")</td><td>" + esc(c[2]) + " (" +
      c[6] + ')</td><td class="chg"><b>' + (c[3] ? "won: the word is now new" :
      "lost: found is not expected, the word is unchanged") + "</b></td></tr></table>";
  }
  function violPanel() {
    if (!V || cur !== vstep) { $("viol").innerHTML = ""; return; }
    var out = '<p class="bad"><b>Violation' + (V.step === null ? " after the schedule" : "") +
              ":</b> " + esc(V.message) + "</p>";
    if (V.audit.length) {
      var listed = 0;
      V.audit.forEach(function (r) { listed += /^\d+ frames/.test(r[0]) ? parseInt(r[0], 10) : 1; });
      out += "<p>The auditor (what the references held say each frame must hold) found " +
             V.auditTotal + " differences" + (listed < V.auditTotal ? ", the first " + listed +
             " of them:" : ":") + "</p>";
      out += '<table class="w"><tr><th>frames</th><th>field</th><th>the auditor expected</th>' +
             "<th>the frames hold</th></tr>" + V.audit.map(function (r) {
               return "<tr><td>" + esc(r[0]) + "</td><td>" + esc(r[1]) + "</td><td>" + esc(r[2]) +
                      '</td><td class="chg">' + esc(r[3]) + "</td></tr>"; }).join("") + "</table>";
    }
    $("viol").innerHTML = out;
  }

  var mm = $("minimap");
  function minimap() {
    var w = mm.clientWidth || 1200, h = mm.height, rowh = (h - 8) / D.cpus;
    if (mm.width !== w) { mm.width = w; mm.base = null; }
    var g = mm.getContext("2d");
    if (!mm.base) {
      g.fillStyle = "#fafafa"; g.fillRect(0, 0, w, h);
      for (var i = 0; i < N; i++) {
        var st = steps[i], x = Math.floor(i * w / N);
        g.fillStyle = "#90a4ae";
        g.fillRect(x, 4 + st[0] * rowh, Math.max(1, Math.ceil(w / N)), rowh - 1);
      }
      for (i = 0; i < N; i++) {               // the cmpxchgs over the rest, 3 px wide
        st = steps[i];
        if (!st[3]) continue;
        g.fillStyle = st[3][3] ? "#43a047" : "#e53935";
        g.fillRect(Math.floor(i * w / N) - 1, 4 + st[0] * rowh, 3, rowh - 1);
      }
      if (vstep >= 0) { g.fillStyle = "#000"; g.fillRect(Math.floor(vstep * w / N), 0, 2, h); }
      mm.base = g.getImageData(0, 0, w, h);
    } else {
      g.putImageData(mm.base, 0, 0);
    }
    g.fillStyle = "#1565c0";
    g.fillRect(Math.floor(cur * w / N), 0, 3, 4);
    g.fillRect(Math.floor(cur * w / N), h - 4, 3, 4);
  }

  function draw() {
    var st = steps[cur];
    $("stepno").value = cur + 1;
    $("head").textContent = "step " + (cur + 1) + " of " + N + ": " +
      st[1].map(function (t) { return T[t]; }).join("; ");
    lanes(); words(); casPanel(); violPanel(); minimap();
    var b = document.body;
    b.setAttribute("data-step", String(cur + 1));
    b.setAttribute("data-steps", String(N));
    b.setAttribute("data-cpu", String(st[0]));
    b.setAttribute("data-scroll-width", String(document.documentElement.scrollWidth));
  }
  function go(i) { cur = Math.max(0, Math.min(N - 1, i)); draw(); }
  function find(what, dir) {
    for (var i = cur + dir; i >= 0 && i < N; i += dir) {
      if (what === "cas" && steps[i][3]) return go(i);
      if (what === "switch" && steps[i][0] !== steps[cur][0]) return go(i);
      if (what === "sp" && isSp[i]) return go(i);
    }
  }
  var key = window.xensimPage.stepper({n: N, go: go, cur: function () { return cur; },
    more: function (k) {
      var lower = k.toLowerCase(), dir = k === lower ? 1 : -1;
      if (lower === "c") find("cas", dir);
      else if (lower === "w") find("switch", dir);
      else if (lower === "s") find("sp", dir);
      else if (lower === "v" && vstep >= 0) go(vstep);
      else return false;
      return true;
    }});
  Array.prototype.forEach.call(document.querySelectorAll("button.jump"), function (b) {
    b.onclick = function () {
      var w = b.getAttribute("data-what");
      if (w === "viol") { if (vstep >= 0) go(vstep); } else find(w, 1);
    };
  });
  $("lanes").onclick = function (e) {
    var b = e.target.closest && e.target.closest(".box[data-i]");
    if (b) go(parseInt(b.getAttribute("data-i"), 10));
  };
  mm.addEventListener("click", function (e) { go(Math.floor(e.offsetX / mm.clientWidth * N)); });
  document.body.setAttribute("data-violation-step", String(vstep + 1));
  if (N === 0) $("head").textContent = "No step.";
  window.xensimPage.start(N, key, function (i) { cur = i; draw(); });
})();
