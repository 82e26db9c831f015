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
    ws.onmessage = (ev) => term.write(new Uint8Array(ev.data));
    ws.onclose = (ev) => {
      state.textContent = "closed";
      window.bizcloudShellClosed = true;
      if (ev.code !== 1000 && ev.code !== 1005) term.write(`\r\n\x1b[1;31m[bizcloud] connection closed (${ev.code})\x1b[0m\r\n`);
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

  window.BizCloud = { liveInstances, shell, replay, users, grayControls };
})();
