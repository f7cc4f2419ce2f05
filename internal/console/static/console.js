// Live updates for the console: when the server says something changed, fetch this page
// again and swap in the regions marked data-live. A region the operator is typing in is
// left alone until they are done. Without this script every page still works; it just
// does not update by itself.
(function () {
  'use strict';
  var regions = document.querySelectorAll('[data-live][id]');
  var status = document.getElementById('live-status');
  if (!regions.length || !window.EventSource || !window.fetch) { return; }
  var busy = false, again = false;

  function editing(el) {
    var a = document.activeElement;
    if (a && a !== document.body && el.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) { return true; }
    var fields = el.querySelectorAll('input[type=text], textarea');
    for (var i = 0; i < fields.length; i++) { if (fields[i].value) { return true; } }
    return false;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { 'X-Console-Live': '1' }, credentials: 'same-origin', redirect: 'manual' })
      .then(function (r) {
        if (r.type === 'opaqueredirect' || r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-live][id]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && !editing(el)) { el.replaceWith(document.importNode(fresh, true)); }
        });
        if (status) { status.textContent = 'Updated ' + new Date().toLocaleTimeString(); }
      })
      .catch(function () { if (status) { status.textContent = 'Update failed; retrying.'; } })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var es = new EventSource('/console/live');
  es.addEventListener('change', refresh);
  es.onopen = function () { if (status) { status.textContent = 'Live'; } };
  es.onerror = function () { if (status) { status.textContent = 'Reconnecting…'; } };
})();
