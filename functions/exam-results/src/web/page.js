(function () {
  var c = JSON.parse(document.getElementById('c').textContent), t = c.t;
  var form = document.getElementById('f'), out = document.getElementById('out');
  var year = document.getElementById('y'), roll = document.getElementById('r');
  var timer = 0, seq = 0, MAX_TRIES = 5, CAP_SECONDS = 30;
  function fmt(s, v) { return s.replace(/\{(\w+)\}/g, function (m, k) { return k in v ? v[k] : m; }); }
  function el(tag, text) { var e = document.createElement(tag); e.textContent = text; return e; }
  // The API's URL form: digits only, no leading zeros.
  function norm(s) { s = s.trim().replace(/^0+(?=\d)/, ''); return /^\d{1,18}$/.test(s) ? s : null; }
  function show(nodes, cls, focus) {
    out.className = cls || '';
    out.replaceChildren.apply(out, nodes);
    if (focus) out.focus();
  }
  function grade(m) {
    for (var i = 0; i < c.bands.length; i++) if (m >= c.bands[i][0]) return c.bands[i][1];
  }
  function result(r) {
    var dl = document.createElement('dl');
    function row(k, v) { if (v != null) { dl.appendChild(el('dt', k)); dl.appendChild(el('dd', String(v))); } }
    row(t.roll, r.roll_number); row(t.year, r.exam_year); row(t.marks, r.marks);
    if (c.pass != null) row(t.outcome, r.marks >= c.pass ? t.pass : t.fail);
    row(t.grade, grade(r.marks));
    show([el('h2', t.heading), dl], '', true);
  }
  // 429: wait at least Retry-After; 503 or no answer: exponential backoff
  // with jitter, capped; a few tries, then stop and say so.
  function retry(y, r, tries, text, after, id) {
    if (tries >= MAX_TRIES) { show([el('p', t.gave_up)], 'err', true); return; }
    var backoff = Math.pow(2, tries) * (0.5 + Math.random() / 2);
    var s = Math.ceil(Math.min(CAP_SECONDS, Math.max(after, backoff)));
    show([el('p', fmt(text, { s: s }))], 'err');
    timer = setTimeout(function () { lookup(y, r, tries + 1, id); }, s * 1000);
  }
  function lookup(y, r, tries, id) {
    fetch(c.api + '/results/' + y + '/' + r, { credentials: 'omit' }).then(function (res) {
      if (id !== seq) return;
      if (res.status === 200) return res.json().then(function (j) { if (id === seq) result(j); });
      if (res.status === 404) return res.json().catch(function () { return {}; }).then(function (j) {
        if (id !== seq) return;
        var code = j && j.error && j.error.code, wait = +res.headers.get('retry-after');
        if (code !== 'results_not_published') return show([el('p', fmt(t.not_found, { year: y, roll: r }))], 'err', true);
        // Retry-After counts the seconds until the publication time.
        var time = new Date(Date.now() + wait * 1000).toLocaleString(document.documentElement.lang, { dateStyle: 'long', timeStyle: 'short' });
        show([el('p', fmt(wait ? t.not_published : t.not_published_later, { year: y, time: time }))], 'err', true);
      });
      if (res.status === 429) return retry(y, r, tries, t.rate_limited, +res.headers.get('retry-after') || 1, id);
      if (res.status >= 500) return retry(y, r, tries, t.unavailable, 0, id);
      show([el('p', t.invalid)], 'err', true);
    }, function () { if (id === seq) retry(y, r, tries, t.unavailable, 0, id); });
  }
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    clearTimeout(timer);
    var y = norm(year.value), r = norm(roll.value), id = ++seq;
    if (!y || y.length !== 4) { show([el('p', t.invalid)], 'err'); year.focus(); return; }
    if (!r) { show([el('p', t.invalid)], 'err'); roll.focus(); return; }
    show([el('p', t.loading)]);
    lookup(y, r, 0, id);
  });
})();
