// The operator's page, kept live: every few seconds it asks /operator/status for the
// same rows the server rendered and puts them in place. Text only: every value goes in
// through textContent, never as markup.
"use strict";

(function () {
  const body = document.body;
  const statusUrl = body.dataset.statusUrl;
  const every = Number(body.dataset.refreshMs) || 2000;
  const problem = document.getElementById("problem");
  const live = document.getElementById("live");

  function cell(tag, value) {
    const element = document.createElement(tag);
    if (typeof value === "string") {
      element.textContent = value;
    } else {
      const badge = document.createElement("span");
      badge.className = "tone tone-" + value.tone;
      badge.textContent = value.text;
      element.appendChild(badge);
    }
    return element;
  }

  function fillTable(id, table) {
    const tbody = document.querySelector("#" + id + " tbody");
    if (!tbody) return;
    const rows = [];
    if (table.rows.length === 0) {
      const row = document.createElement("tr");
      row.className = "empty";
      const only = cell("td", table.empty);
      only.colSpan = 99;
      row.appendChild(only);
      rows.push(row);
    }
    for (const cells of table.rows) {
      const row = document.createElement("tr");
      for (const value of cells) row.appendChild(cell("td", value));
      rows.push(row);
    }
    tbody.replaceChildren(...rows);
    const note = document.querySelector('[data-note-for="' + id + '"]');
    if (note) note.textContent = table.note;
  }

  function fillSummary(items) {
    const list = document.getElementById("summary");
    list.replaceChildren(...items.map(function (item) {
      const entry = document.createElement("div");
      entry.appendChild(cell("dt", item.label));
      entry.appendChild(cell("dd", item.value));
      return entry;
    }));
  }

  function show(snapshot) {
    fillSummary(snapshot.summary);
    for (const [id, table] of Object.entries(snapshot.tables)) fillTable(id, table);
    document.getElementById("generated").textContent = snapshot.generated;
    problem.hidden = true;
    live.hidden = false;
  }

  function fail(why) {
    problem.textContent = "Not refreshed: " + why + ". The rows below may be old.";
    problem.hidden = false;
    live.hidden = true;
  }

  async function refresh() {
    try {
      const answer = await fetch(statusUrl, {cache: "no-store", credentials: "same-origin"});
      if (answer.status === 401) {
        fail("the coordinator asks to sign in again (reload the page)");
      } else if (!answer.ok) {
        fail("the coordinator answered HTTP " + answer.status);
      } else {
        show(await answer.json());
      }
    } catch (error) {
      fail("the coordinator cannot be reached (" + error.message + ")");
    }
    setTimeout(refresh, every);
  }

  refresh();
})();
