// The console's JavaScript: login/logout, live instance lists, the WebShell terminal, shell replay, users.
// No framework: a few functions on window.BizCloud, used by the server-rendered pages.
"use strict";
(function () {
  const enc = new TextEncoder();
  const STDIN = 0, RESIZE = 4, CHUNK = 16 * 1024;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }

  async function login(form) {
    const body = { name: form.name.value, password: form.password.value };
    const r = await fetch("/api/v1/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (r.ok) {
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/console/") ? next : "/console/";
    } else {
      const detail = (await r.json().catch(() => ({}))).detail;
      document.getElementById("login-error").textContent = typeof detail === "string" ? detail : "login failed";
    }
  }

  // Instances of one service by environment and group; refreshed whenever the change stream moves.
  async function liveInstances(box) {
    const service = box.dataset.service, canShell = box.dataset.canShell === "yes";
    const state = document.getElementById("live-state");
    async function snapshot() {
      const r = await fetch(`/api/v1/instances?service=${encodeURIComponent(service)}`);
      const data = await r.json();
      render(data.instances);
      return data.revision;
    }
    function render(instances) {
      const groups = {};
      for (const i of instances) (groups[`${i.env} / ${i.group}`] ||= []).push(i);
      box.replaceChildren();
      if (!instances.length) box.append(el("p", {}, "No instances."));
      for (const key of Object.keys(groups).sort()) {
        const rows = groups[key].sort((a, b) => a.pod.localeCompare(b.pod)).map((i) => {
          const shell = canShell
            ? el("a", { class: "shell", href: `/console/shell?namespace=${i.namespace}&pod=${i.pod}`,
                        target: "_blank" }, "shell")
            : "";
          const ports = Object.entries(i.ports).map(([k, v]) => `${k}=${v}`).join(",");
          return el("tr", { class: "instance", "data-pod": i.pod },
            el("td", {}, i.pod), el("td", {}, i.ip || ""), el("td", {}, ports), el("td", {}, i.node || ""),
            el("td", {}, i.release || ""), el("td", {}, shell));
        });
        box.append(el("h3", { class: "group" }, `${key} (${rows.length})`),
          el("table", { class: "list", "data-group": key },
            el("thead", {}, el("tr", {}, ...["pod", "ip", "ports", "node", "release", ""].map((h) => el("th", {}, h)))),
            el("tbody", {}, ...rows)));
      }
    }
    let since = await snapshot();
    for (;;) {
      try {
        const r = await fetch(`/api/v1/changes?since=${since}&wait=25`);
        if (r.status === 410) { since = await snapshot(); continue; }
        const page = await r.json();
        if (page.changes.some((c) => c.service === service)) await snapshot();
        since = page.next;
        state.textContent = "live";
      } catch (e) {
        state.textContent = "reconnecting…";
        await new Promise((ok) => setTimeout(ok, 2000));
      }
    }
  }

  // The WebShell: xterm.js <-> binary WebSocket frames (0x00 + stdin, 0x04 + {"cols","rows"}).
  function shell(box, path) {
    const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14 });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    window.bizcloudTerm = term;
    const state = document.getElementById("shell-state");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const sep = path.includes("?") ? "&" : "?";
    const ws = new WebSocket(`${proto}//${location.host}${path}${sep}cols=${term.cols}&rows=${term.rows}`);
    ws.binaryType = "arraybuffer";
    const frame = (channel, bytes) => {
      const out = new Uint8Array(bytes.length + 1);
      out[0] = channel; out.set(bytes, 1);
      return out;
    };
    const sendResize = () => {
      if (ws.readyState === WebSocket.OPEN)
        ws.send(frame(RESIZE, enc.encode(JSON.stringify({ cols: term.cols, rows: term.rows }))));
    };
    ws.onopen = () => { state.textContent = "connected"; sendResize(); term.focus(); };
    let last = new Uint8Array(0);
    ws.onmessage = (ev) => { last = new Uint8Array(ev.data); term.write(last); };
    ws.onclose = (ev) => {   // the server's reason (a stalled client, say) unless its last line said it
      state.textContent = ev.reason ? `closed (${ev.code}): ${ev.reason}` : "closed";
      window.bizcloudShellClosed = true;
      window.bizcloudShellClose = { code: ev.code, reason: ev.reason };
      const said = ev.reason && new TextDecoder().decode(last).includes(ev.reason);
      if (ev.code !== 1000 && ev.code !== 1005 && !said)
        term.write(`\r\n\x1b[1;31m[bizcloud] connection closed (${ev.code})${ev.reason ? `: ${ev.reason}` : ""}\x1b[0m\r\n`);
    };
    term.onData((data) => {   // a huge paste goes out in bounded frames
      const bytes = enc.encode(data);
      for (let i = 0; i < bytes.length; i += CHUNK) ws.send(frame(STDIN, bytes.subarray(i, i + CHUNK)));
    });
    term.onResize(sendResize);
    window.addEventListener("resize", () => fit.fit());
    window.bizcloudShell = ws;
  }

  // Play an asciicast v2 recording into a read-only terminal, with its timing (pauses capped at 1 s).
  async function replay(box, url) {
    const text = await (await fetch(url)).text();
    const [headerLine, ...lines] = text.split("\n").filter((l) => l.trim());
    const header = JSON.parse(headerLine);
    const term = new Terminal({ cols: header.width, rows: header.height, disableStdin: true });
    term.open(box);
    window.bizcloudTerm = term;
    const events = lines.map((l) => JSON.parse(l));
    async function play() {
      term.reset();
      window.bizcloudReplayDone = false;
      let last = 0;
      for (const [t, kind, data] of events) {
        await new Promise((ok) => setTimeout(ok, Math.min(1000, (t - last) * 1000)));
        last = t;
        if (kind === "o") term.write(data);
        else if (kind === "r") { const [c, r] = data.split("x").map(Number); term.resize(c, r); }
      }
      window.bizcloudReplayDone = true;
    }
    document.getElementById("replay-again").onclick = play;
    play();
  }

  // A service's gray release controls: the API decides (roles, state); its refusal shows beside
  // the buttons, and a success reloads the page to show the new state.
  function grayControls(blocks) {
    for (const block of blocks) {
      block.addEventListener("click", async (ev) => {
        if (ev.target.tagName !== "BUTTON") return;
        const { service, env } = block.dataset, action = ev.target.dataset.action;
        const url = `/api/v1/release/gray/${encodeURIComponent(service)}/${encodeURIComponent(env)}/${action}`;
        const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
        if (r.ok) { location.reload(); return; }
        const d = (await r.json().catch(() => ({}))).detail;
        block.querySelector(".error").textContent = typeof d === "string" ? d : (d && d.message) || `${r.status}`;
      });
    }
  }

  // A service's deploy, dry-run and scale, per environment. A deploy streams its progress as
  // NDJSON lines, shown as they come; the API decides (roles, an operation already running) and
  // its refusal, before or during the stream, is shown beside the buttons.
  function releaseControls(sections) {
    const detail = (d, status) => typeof d === "string" ? d
      : Array.isArray(d) ? d.map((p) => `${p.loc.slice(1).join(".")}: ${p.msg}`).join("; ") : `${status}`;
    const describe = (e) => e.rollout
      ? `${e.rollout.workload}: ${e.rollout.updated}/${e.rollout.desired} updated, ${e.rollout.ready} ready` +
        ` (${e.rollout.state})${e.rollout.message ? ` ${e.rollout.message}` : ""}`
      : e.step !== undefined ? String(e.step) : JSON.stringify(e);
    for (const section of sections) {
      const { service, env } = section.dataset;
      const url = (op) => `/api/v1/release/${encodeURIComponent(service)}/${encodeURIComponent(env)}/${op}`;
      const [progress, outcome, error] = [".progress", ".outcome", ".error"].map((s) => section.querySelector(s));
      async function call(op, body, stream) {
        const usable = [...section.querySelectorAll("button")].filter((b) => !b.disabled);
        usable.forEach((b) => { b.disabled = true; });
        progress.textContent = outcome.textContent = error.textContent = "";
        progress.hidden = !stream;
        try {
          const r = await fetch(url(op), { method: "POST", body: JSON.stringify(body), headers: {
            "Content-Type": "application/json", Accept: stream ? "application/x-ndjson" : "application/json" } });
          if (!r.ok) { error.textContent = detail((await r.json().catch(() => ({}))).detail, r.status); return null; }
          if (!stream) return await r.json();
          const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
          let rest = "", result = null;
          for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
            const lines = (rest + chunk.value).split("\n");
            rest = lines.pop();
            for (const e of lines.filter((l) => l.trim()).map((l) => JSON.parse(l))) {
              if (e.result) result = e.result;
              else if (e.error) error.textContent = `${e.error} (${e.status})`;
              else progress.textContent += describe(e) + "\n";
            }
          }
          if (!result && !error.textContent) error.textContent = "the progress stream ended without a result";
          return result;
        } catch (e) {
          error.textContent = `${e}`;
          return null;
        } finally {
          usable.forEach((b) => { b.disabled = false; });
        }
      }
      async function refreshHistory() {
        const html = await (await fetch(location.href)).text();
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("history");
        document.getElementById("history").replaceChildren(...fresh.childNodes);
      }
      const deployForm = section.querySelector("form.deploy"), scaleForm = section.querySelector("form.scale");
      const image = () => deployForm.image.value.trim() || null;
      deployForm.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const done = await call("deploy", { image: image(), diff: true }, true);
        if (!done) return;
        const rollouts = Object.entries(done.rollouts).map(([name, s]) => `${name} ${s.state}`).join(", ");
        const changed = done.diffs.filter((d) => d.action !== "unchanged").length;
        outcome.textContent = `deployed ${done.image} (release ${done.release}) to ${done.namespace}: ` +
          `${changed} of ${done.diffs.length} objects changed${rollouts ? `; ${rollouts}` : ""}`;
        await refreshHistory();
      });
      deployForm.querySelector("button[name=dry-run]").addEventListener("click", async () => {
        const done = await call("deploy", { image: image(), dry_run: true, diff: true }, false);
        if (!done) return;
        const changed = done.diffs.filter((d) => d.action !== "unchanged");
        progress.hidden = false;
        progress.textContent = changed.map((d) => `# ${d.object} (${d.action})\n${d.diff}`).join("\n");
        outcome.textContent = `dry run of ${done.image}: ${changed.length} of ${done.diffs.length} objects would change`;
      });
      scaleForm.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const f = scaleForm, body = { rolling: f.rolling.checked };
        if (f.replicas.value !== "") body.replicas = Number(f.replicas.value);
        for (const k of ["cpu", "memory"]) if (f[k].value.trim()) body[k] = f[k].value.trim();
        const done = await call("scale", body, false);
        if (!done) return;
        const moves = done.replicas ? [`replicas ${done.replicas[0]} → ${done.replicas[1]}`] : [];
        for (const [k, [a, b]] of Object.entries(done.resources)) moves.push(`${k} ${a} → ${b}`);
        const how = { "in-place": "in place", rolling: "rolling", none: "no pod restarted" }[done.method];
        outcome.textContent = `scaled ${done.service} in ${done.env}: ${moves.join(", ") || "nothing"} (${how})`;
        await refreshHistory();
      });
    }
  }

  // The users page (admins): add a user, change a role, issue a token, delete. The API decides;
  // its refusal (say, demoting the last admin) is shown as it comes. Secrets are shown once, on
  // this page only: the table is refreshed in place instead of reloading the page.
  function users(table, addForm) {
    const error = document.getElementById("users-error"), secret = document.getElementById("users-secret");
    async function call(method, url, body) {
      error.textContent = "";
      const r = await fetch(url, {
        method, headers: { "Content-Type": "application/json" }, body: body && JSON.stringify(body),
      });
      const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
      if (!r.ok) {
        const d = data.detail;
        error.textContent = typeof d === "string" ? d
          : Array.isArray(d) ? d.map((p) => `${p.loc.slice(1).join(".")}: ${p.msg}`).join("; ") : `${r.status}`;
        return null;
      }
      return data;
    }
    async function refresh() {
      const html = await (await fetch(location.href)).text();
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("users");
      table.replaceChildren(...fresh.childNodes);
    }
    table.addEventListener("click", async (ev) => {
      const row = ev.target.closest("tr.user");
      if (!row || ev.target.tagName !== "BUTTON") return;
      const name = row.dataset.name, url = `/api/v1/users/${encodeURIComponent(name)}`;
      if (ev.target.classList.contains("set-role")) {
        if (await call("PUT", url, { role: row.querySelector("select.role").value })) {
          secret.textContent = `${name} is now ${row.querySelector("select.role").value}`;
          await refresh();
        }
      } else if (ev.target.classList.contains("issue-token")) {
        const made = await call("POST", `${url}/tokens`, { name: "console" });
        if (made) secret.textContent = `token for ${name} (shown once): ${made.token}`;
      } else if (ev.target.classList.contains("delete-user")) {
        if (!confirm(`Delete user ${name}? Their sessions and tokens stop working.`)) return;
        if (await call("DELETE", url)) { secret.textContent = `${name} deleted`; await refresh(); }
      }
    });
    addForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { name: addForm.name.value, role: addForm.role.value };
      if (addForm.password.value) body.password = addForm.password.value;
      const made = await call("POST", "/api/v1/users", body);
      if (!made) return;
      secret.textContent = made.password ? `${made.name} added; password (shown once): ${made.password}`
        : `${made.name} added`;
      addForm.reset();
      await refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("login");
    if (form) form.addEventListener("submit", (ev) => { ev.preventDefault(); login(form); });
    const out = document.getElementById("logout");
    if (out) out.onclick = async () => {
      await fetch("/api/v1/auth/logout", { method: "POST" });
      location.href = "/console/login";
    };
  });

  window.BizCloud = { liveInstances, shell, replay, users, grayControls, releaseControls };
})();
