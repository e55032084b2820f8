// Progressive enhancement: search over the prebuilt, sharded index in /search/<xx>.json.
// Only the shards of the words typed are downloaded. Without JavaScript the search page
// still explains where to find things; every page stays reachable through navigation.
(function () {
  "use strict";
  var form = document.querySelector(".search-form");
  var input = document.getElementById("search-input");
  var results = document.getElementById("search-results");
  if (!form || !input || !results || !window.fetch) { return; }
  var cache = {};
  function words(text) {
    return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(function (w) { return w.length >= 2; });
  }
  function shard(word) {
    var key = word.slice(0, 2).replace(/[^a-z0-9]/g, "_");
    if (!cache[key]) {
      cache[key] = fetch("/search/" + key + ".json").then(function (r) { return r.ok ? r.json() : {}; }).catch(function () { return {}; });
    }
    return cache[key];
  }
  function lookup(word) {
    return shard(word).then(function (index) {
      var found = {};
      Object.keys(index).forEach(function (term) {
        if (term.indexOf(word) === 0) {
          index[term].forEach(function (entry) { found[entry.url] = entry; });
        }
      });
      return found;
    });
  }
  function show(entries, query) {
    results.textContent = "";
    var heading = document.createElement("h2");
    heading.textContent = entries.length + " result" + (entries.length === 1 ? "" : "s") + " for \u201c" + query + "\u201d";
    results.appendChild(heading);
    var list = document.createElement("ul");
    entries.slice(0, 50).forEach(function (entry) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = entry.url;
      link.textContent = entry.title;
      item.appendChild(link);
      list.appendChild(item);
    });
    results.appendChild(list);
  }
  function run(query) {
    var terms = words(query);
    if (!terms.length) { results.textContent = ""; return; }
    Promise.all(terms.map(lookup)).then(function (sets) {
      var first = sets[0];
      var entries = Object.keys(first).filter(function (url) {
        return sets.every(function (set) { return set[url]; });
      }).map(function (url) { return first[url]; });
      entries.sort(function (a, b) { return a.title.length - b.title.length || (a.title < b.title ? -1 : 1); });
      show(entries, query);
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    history.replaceState(null, "", "?q=" + encodeURIComponent(input.value));
    run(input.value);
  });
  var initial = new URLSearchParams(location.search).get("q");
  if (initial) { input.value = initial; run(initial); }
})();
