// The Xnode console: one page, served by xnoded itself, that reads the node through
// its API (a session the owner signed) and changes it only with what the owner signs
// here (a push). Nothing is fetched from elsewhere; no key leaves the page.

const main = document.getElementById("main");
const nav = document.getElementById("nav");

/** An element, its attributes and children; text is always text, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call: its JSON answer, or an ApiError with the agent's sentence. */
async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = new ApiError(response.status, data?.error?.code, data?.error?.message ?? text);
    if (response.status === 401 && !path.startsWith("/v1/session")) signedOut();
    throw error;
  }
  return data;
}

// ---- Signing, in the page: an ed25519 owner key (never sent), or a wallet. ----

const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const utf8 = (s) => new TextEncoder().encode(s);

/** The owner's way to sign, once chosen: a function from text to a signature. */
let signer = null;

async function ed25519Signer(secret) {
  const m = /^ed25519-secret:([A-Za-z0-9+/=]+)$/.exec(secret.trim());
  if (!m) throw new Error('an ed25519 owner key is "ed25519-secret:" and base64 (xnodectl key new)');
  const seed = unb64(m[1]);
  if (seed.length !== 32) throw new Error("an ed25519 owner key is 32 bytes");
  // PKCS#8 for an Ed25519 seed (RFC 8410).
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b,
    0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed]);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  const sign = async (text) =>
    "ed25519:" + b64(new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, utf8(text))));
  return { kind: "ed25519 key", personal: sign, statement: sign };
}

async function walletSigner() {
  if (!window.ethereum) throw new Error("no wallet in this browser (EIP-1193)");
  const [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
  const hex = (text) => "0x" + [...utf8(text)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return {
    kind: `wallet ${account}`,
    // A session's challenge: personal_sign, which the wallet shows as text.
    personal: (text) => window.ethereum.request({ method: "personal_sign", params: [hex(text), account] }),
    // A push: EIP-712 typed data in the XnodeOS domain (docs/mesh.md).
    statement: async (text) => {
      const [kind, subject] = text.split("\n");
      const typed = {
        types: {
          EIP712Domain: [{ name: "name", type: "string" }, { name: "version", type: "string" }],
          Statement: [{ name: "kind", type: "string" }, { name: "subject", type: "string" },
            { name: "text", type: "string" }],
        },
        primaryType: "Statement",
        domain: { name: "XnodeOS", version: "1" },
        message: { kind, subject, text },
      };
      return "eth:" + await window.ethereum.request({
        method: "eth_signTypedData_v4", params: [account, JSON.stringify(typed)],
      });
    },
  };
}

/** The key field and the wallet button, which set `signer`. */
function signerPicker(onReady) {
  const field = h("input", { type: "password", id: "owner-key", autocomplete: "off",
    placeholder: "ed25519-secret:…", "aria-label": "The owner's ed25519 key" });
  const say = h("p", { class: "muted", role: "status" },
    signer ? `Signing with the ${signer.kind}.` : "");
  const use = async (make) => {
    try {
      signer = await make();
      say.textContent = `Signing with the ${signer.kind}.`;
      onReady?.();
    } catch (e) {
      say.textContent = e.message;
      say.className = "bad";
    }
  };
  return h("div", {},
    h("label", { for: "owner-key", class: "label" }, "The owner's key (stays in this page)"),
    h("div", { class: "row" }, field,
      h("button", { type: "button", id: "use-key", onclick: () => use(() => ed25519Signer(field.value)) },
        "Use this key"),
      window.ethereum
        ? h("button", { type: "button", class: "secondary", onclick: () => use(walletSigner) }, "Use a wallet")
        : null),
    say);
}

// ---- Signing in ----

function signedOut() {
  events?.close();
  events = null;
  clearInterval(looking);
  signer = null;
  status = null;
  changes.length = 0;
  samples.length = 0;
  nav.hidden = true;
  if (location.hash !== "#/sign-in") location.hash = "#/sign-in";
  else render();
}

async function signInView() {
  nav.hidden = true;
  const challengeBox = h("pre", { id: "challenge" }, "…");
  const say = h("p", { role: "status" });
  let challenge = null;
  const fresh = async () => {
    challenge = await api("POST", "/v1/session/challenge");
    challengeBox.textContent = challenge.challenge;
  };
  const signIn = async () => {
    try {
      const signature = await signer.personal(challenge.challenge);
      await api("POST", "/v1/session", { challenge: challenge.challenge, signature });
      start();
    } catch (e) {
      say.textContent = `Not signed in: ${e.message}`;
      say.className = "bad";
      await fresh();
    }
  };
  main.replaceChildren(h("h1", {}, "Sign in"),
    h("section", { class: "card" },
      h("p", {}, "Sign this challenge as the node's owner. It names this node (its certificate's fingerprint, as ",
        h("code", {}, "xnodectl status"), " shows it), is good once, and expires in two minutes."),
      challengeBox,
      signerPicker(signIn),
      say));
  await fresh();
}

// ---- The node's changes, live ----

let events = null;
let status = null;
/** The machine's charts need a look now and then even when nothing changes. */
let looking = null;
const changes = [];
const samples = [];
let refreshing = null;

function start() {
  nav.hidden = false;
  clearInterval(looking);
  looking = setInterval(refreshSoon, 5000);
  if (!events) {
    events = new EventSource("/v1/events");
    // The browser reconnects by itself unless the answer was a refusal: then the
    // session is over, and a look at the node says so.
    events.onerror = () => {
      if (events?.readyState === EventSource.CLOSED) {
        events = null;
        loadStatus().then(start, () => {});
      }
    };
    const kinds = ["snapshot", "generation", "progress", "workload", "workload_removed",
      "member", "placement", "rollout", "converged"];
    for (const kind of kinds) {
      events.addEventListener(kind, (e) => {
        const event = JSON.parse(e.data);
        if (kind !== "snapshot") {
          changes.unshift({ at: new Date(), text: describe(event), event });
          changes.length = Math.min(changes.length, 100);
        }
        for (const f of listeners) f(event);
        refreshSoon();
      });
    }
  }
  if (location.hash === "#/sign-in" || location.hash === "") location.hash = "#/";
  else render();
}

const listeners = new Set();

function describe(e) {
  switch (e.kind) {
    case "generation": return `generation ${e.generation.number}: ${e.generation.outcome.state.replace("_", " ")}`;
    case "progress": return progressLine(e.applying);
    case "workload": return `${e.name}: ${e.state}${e.health ? (e.health.healthy ? ", healthy" : `, unhealthy (${e.health.why ?? ""})`) : ""}`;
    case "workload_removed": return `${e.name}: removed`;
    case "member": return `member ${e.node}: ${e.state}`;
    case "placement": return `${e.workload.name} runs on ${e.workload.running_on.join(", ") || "no member"}`;
    case "rollout": return `rollout: ${e.rollout.step}`;
    case "converged": return e.converged ? "converged" : "not converged";
    default: return e.kind;
  }
}

function progressLine(a) {
  const waiting = Object.entries(a.workloads ?? {})
    .filter(([, g]) => g.state !== "healthy")
    .map(([name, g]) => `${name} ${g.state}${g.why ? ` (${g.why})` : ""}`);
  return `applying ${a.generation ? `generation ${a.generation}` : "a new generation"} (${a.phase.replace("_", " ")})` +
    (waiting.length ? `: ${waiting.join(", ")}` : "");
}

/** The status again, at most every half second, and the page drawn from it. */
function refreshSoon() {
  if (refreshing) return;
  refreshing = setTimeout(async () => {
    refreshing = null;
    try {
      await loadStatus();
      currentView?.update?.();
    } catch { /* shown by the next look */ }
  }, 500);
}

async function loadStatus() {
  status = await api("GET", "/v1/status");
  if (status.machine) {
    samples.push({ at: Date.now(), machine: status.machine });
    while (samples.length > 120) samples.shift();
  }
  return status;
}

// ---- Views ----

let currentView = null;

/** Whether `view` is still the one shown: a draw that awaited the node may find the
 * user gone to another page meanwhile, and must then draw nothing. */
const showing = (view) => currentView === view;

const bytes = (n) => {
  if (n === undefined || n === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
};

const stateClass = (s) => (s === "active" || s === "exited" ? "ok" : s === "failed" ? "bad" : "warn");

function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.map(([k, v, cls]) => h("div", {}, h("dt", {}, k), h("dd", { class: cls }, v))));
}

/** A line chart of `values` (0..1) over the samples. */
function chart(label, values) {
  const w = 300, hgt = 80;
  const points = values.map((v, i) =>
    `${(i / Math.max(values.length - 1, 1)) * w},${hgt - Math.max(0, Math.min(1, v)) * hgt}`).join(" ");
  const last = values.length
    ? `${Math.round(Math.max(0, Math.min(1, values[values.length - 1])) * 100)} %` : "-";
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: ${last}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  return h("div", {}, h("div", { class: "label" }, `${label}: ${last}`), svg);
}

function machineCharts() {
  const memory = samples.map((s) => 1 - s.machine.resources.memory_free / Math.max(s.machine.resources.memory, 1));
  const disk = samples.map((s) => 1 - s.machine.resources.disk_free / Math.max(s.machine.resources.disk, 1));
  const cpu = [];
  for (let i = 1; i < samples.length; i++) {
    const seconds = (samples[i].at - samples[i - 1].at) / 1000;
    const busy = samples[i].machine.cpu_seconds - samples[i - 1].machine.cpu_seconds;
    cpu.push(busy / Math.max(seconds * samples[i].machine.resources.cpus, 0.001));
  }
  return h("section", { class: "card facts", "aria-label": "The machine over time" },
    chart("CPU", cpu), chart("Memory in use", memory), chart("Disk in use", disk));
}

function nodeView() {
  const draw = () => {
    const s = status;
    const g = s.generation;
    const outcome = g ? g.outcome.state.replace("_", " ") : "none yet";
    main.replaceChildren(
      h("h1", {}, `Node ${s.node ?? "(no spec yet)"}`),
      h("section", { class: "card" }, facts([
        ["Generation", g ? `${g.number} (${outcome})` : "none yet", g?.outcome.state === "healthy" ? "ok" : "warn"],
        ["Converged", s.converged ? "yes" : "no", s.converged ? "ok" : "warn"],
        ["Applying", s.applying ? progressLine(s.applying) : "nothing"],
        ["Owner", s.owner ?? "none"],
        ["Certificate", s.remote?.fingerprint ?? "-"],
        ["Problem", s.last_error ?? s.spec_file?.error ?? "none", s.last_error ? "bad" : undefined],
      ])),
      machineCharts(),
      h("h2", {}, "Workloads"),
      h("div", { class: "card scroll" }, h("table", { id: "workloads" },
        h("thead", {}, h("tr", {}, ["Workload", "State", "Health", "Restarts", "Memory", "CPU", "Problem"]
          .map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, s.workloads.map((w) => h("tr", { "data-workload": w.name },
          h("td", {}, h("a", { href: `#/workloads/${encodeURIComponent(w.name)}` }, w.name)),
          h("td", { class: `state ${stateClass(w.state)}` }, w.state),
          h("td", { class: w.health ? (w.health.healthy ? "ok" : "bad") : "muted" },
            w.health ? (w.health.healthy ? "healthy" : "unhealthy") : "-"),
          h("td", {}, w.usage?.restarts ?? "-"),
          h("td", {}, bytes(w.usage?.memory_bytes)),
          h("td", {}, w.usage?.cpu_ns !== undefined ? `${(w.usage.cpu_ns / 1e9).toFixed(1)} s` : "-"),
          h("td", { class: "bad" }, w.error ?? w.health?.why ?? "")))))),
      h("h2", {}, "Recent changes"),
      h("div", { class: "card" }, changes.length
        ? h("ul", { id: "changes" }, changes.slice(0, 20).map((c) =>
          h("li", {}, h("span", { class: "muted" }, c.at.toLocaleTimeString(), " "), c.text)))
        : h("p", { class: "muted" }, "None since this page opened.")));
  };
  return { draw, update: draw };
}

function workloadView(name) {
  const logs = h("pre", { id: "logs", "aria-live": "polite" });
  let follow = null;
  const draw = () => {
    const w = status.workloads.find((x) => x.name === name);
    const mine = changes.filter((c) => (c.event.name ?? c.event.workload?.name) === name);
    main.replaceChildren(
      h("h1", {}, `Workload ${name}`),
      w ? h("section", { class: "card" }, facts([
        ["State", w.state, stateClass(w.state)],
        ["Unit", w.unit],
        ["Health", w.health ? (w.health.healthy ? "healthy" : `unhealthy: ${w.health.why ?? ""}`) : "no probe"],
        ["Restarts", w.usage?.restarts ?? "-"],
        ["Memory", bytes(w.usage?.memory_bytes)],
        ["State directory", bytes(w.state_bytes)],
      ])) : h("p", { class: "bad" }, "The spec in force has no such workload."),
      h("h2", {}, "Its changes"),
      h("div", { class: "card" }, mine.length
        ? h("ul", {}, mine.map((c) => h("li", {}, h("span", { class: "muted" }, c.at.toLocaleTimeString(), " "), c.text)))
        : h("p", { class: "muted" }, "None since this page opened.")),
      h("h2", {}, "Logs"), logs);
  };
  const open = () => {
    follow = new EventSource(`/v1/workloads/${encodeURIComponent(name)}/logs?lines=200&follow=true`);
    // A reconnect sends the last lines again: start the log afresh.
    let opened = false;
    follow.onopen = () => {
      if (opened) logs.replaceChildren();
      opened = true;
    };
    follow.onmessage = (e) => {
      const line = JSON.parse(e.data);
      logs.append(line.message + "\n");
      while (logs.childNodes.length > 2000) logs.firstChild.remove();
      logs.scrollTop = logs.scrollHeight;
    };
    follow.addEventListener("error", (e) => {
      // xnoded's own `error` event: the journal cannot be read on.
      if (e.data) {
        logs.append(`(the log ended: ${JSON.parse(e.data).message})\n`);
        follow.close();
      }
    });
  };
  return { draw, update: draw, open, close: () => follow?.close() };
}

function applyView(from) {
  const text = h("textarea", { id: "spec", spellcheck: "false", "aria-label": "The spec, as JSON" });
  const file = h("input", { type: "file", accept: ".json,application/json", "aria-label": "Upload a spec" });
  const out = h("div", { id: "apply-result", role: "status" });
  const applyButton = h("button", { type: "button", id: "sign-apply", disabled: true }, "Sign and apply");
  let checked = null;
  let watching = null;
  const changed = () => {
    checked = null;
    applyButton.disabled = true;
  };
  text.addEventListener("input", changed);
  file.addEventListener("change", async () => {
    if (file.files[0]) text.value = await file.files[0].text();
    changed();
  });
  const check = async () => {
    checked = null;
    applyButton.disabled = true;
    let spec;
    try { spec = JSON.parse(text.value); } catch (e) {
      out.replaceChildren(h("p", { class: "bad" }, `Not JSON: ${e.message}`));
      return;
    }
    try {
      const plan = await api("POST", "/v1/plan", { spec });
      checked = spec;
      applyButton.disabled = !signer;
      out.replaceChildren(h("h2", {}, "The plan"),
        plan.actions.length || plan.refused.length
          ? h("div", { class: "card scroll" }, h("table", { id: "plan" },
            h("thead", {}, h("tr", {}, ["Do", "Unit", "Why"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, plan.actions.map((a) => h("tr", {}, h("td", {}, a.op), h("td", {}, a.unit), h("td", {}, a.reason))),
              plan.refused.map((r) => h("tr", { class: "bad" }, h("td", {}, "refused"), h("td", {}, r.unit), h("td", {}, r.reason))))))
          : h("p", {}, "Nothing to do: the node runs this spec."));
    } catch (e) {
      const lines = e.message.split("\n");
      out.replaceChildren(h("p", { class: "bad" }, lines[0]),
        h("ul", { class: "problems", id: "problems" }, lines.slice(1).map((l) => h("li", {}, l.trim()))));
    }
  };
  const apply = async () => {
    applyButton.disabled = true;
    const progress = h("ul", { id: "progress" });
    const verdict = h("p", { id: "verdict", role: "status" }, "Signing…");
    out.replaceChildren(h("h2", {}, "Applying"), progress, verdict);
    out.scrollIntoView({ block: "start" });
    listeners.delete(watching);
    try {
      const draft = await api("POST", "/v1/mesh/push/draft", { spec: checked });
      const signature = await signer.statement(draft.payload);
      // This push's generation is the one made from it: its source names the push.
      let number = null;
      watching = (e) => {
        if (e.kind === "generation" && e.generation.source.kind === "mesh"
          && e.generation.source.push_generation === draft.generation) {
          number = e.generation.number;
          const state = e.generation.outcome.state;
          if (state === "applying") return;
          verdict.textContent = `Generation ${number}: ${state.replace("_", " ")}` +
            (e.generation.outcome.reason ? ` (${e.generation.outcome.reason})` : "");
          verdict.className = state === "healthy" ? "ok" : "bad";
          listeners.delete(watching);
        }
        if (e.kind === "progress" && number !== null && e.applying.generation === number) {
          progress.append(h("li", {}, progressLine(e.applying)));
        }
      };
      listeners.add(watching);
      verdict.textContent = "Sent; waiting for the node…";
      const answer = await api("POST", "/v1/mesh/push", {
        push: { v: 2, peer: draft.peer, generation: draft.generation, timestamp: draft.timestamp, spec: checked, signature },
      });
      if (number === null) verdict.textContent = `${answer}`;
    } catch (e) {
      listeners.delete(watching);
      verdict.textContent = `Not applied: ${e.message}`;
      verdict.className = "bad";
    }
  };
  applyButton.addEventListener("click", apply);
  const draw = async () => {
    main.replaceChildren(
    h("h1", {}, from ? `Go back to generation ${from}` : "Apply a spec"),
    h("section", { class: "card" },
      h("p", {}, "Paste or upload a node spec. It is checked and planned on the node; applying it sends it as a push you sign, as ",
        h("code", {}, "xnodectl mesh push"), " does."),
      file, text,
      h("div", { class: "row" }, h("button", { type: "button", id: "check", onclick: check }, "Check and plan")),
      signerPicker(() => { applyButton.disabled = !checked; }),
      h("div", { class: "row" }, applyButton)),
    out);
    // Going back is applying an earlier generation's node spec again, signed.
    if (from) {
      try {
        text.value = JSON.stringify(await api("GET", `/v1/history/${from}/spec`), null, 2);
        await check();
      } catch (e) {
        out.replaceChildren(h("p", { class: "bad" }, `Generation ${from}'s spec cannot be had: ${e.message}`));
      }
    }
  };
  return { draw, close: () => listeners.delete(watching) };
}

function historyView() {
  const view = {};
  view.draw = async () => {
    const history = await api("GET", "/v1/history");
    if (!showing(view)) return;
    main.replaceChildren(h("h1", {}, "History"),
      h("div", { class: "card scroll" }, h("table", { id: "history" },
        h("thead", {}, h("tr", {}, ["Generation", "", "Outcome", "Source", "Accepted", "Hash", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, history.generations.slice().reverse().map((g) => h("tr", {},
          h("td", {}, g.number),
          h("td", {}, [g.number === history.current ? "current" : "", g.number === history.last_good ? "last good" : ""].filter(Boolean).join(", ")),
          h("td", { class: g.outcome.state === "healthy" ? "ok" : "bad" }, g.outcome.state.replace("_", " "), g.outcome.reason ? `: ${g.outcome.reason}` : ""),
          h("td", {}, g.source.kind),
          h("td", {}, new Date(g.accepted_at * 1000).toLocaleString()),
          h("td", { class: "muted" }, g.hash.slice(0, 19)),
          h("td", {}, g.number !== history.current && g.outcome.state === "healthy"
            ? h("a", { href: `#/apply?from=${g.number}`, "data-back": g.number }, "Go back to this")
            : "")))))),
      h("p", { class: "muted" }, "Going back applies that generation's spec again, as a push you sign; on the node itself, ",
        h("code", {}, "xnodectl rollback"), " does it unsigned."));
  };
  return view;
}

function meshView() {
  const view = {};
  view.draw = async () => {
    let fleet = null;
    try { fleet = await api("GET", "/v1/fleet/status"); } catch { /* no mesh or no fleet */ }
    if (!showing(view)) return;
    // The mesh node's own fields sit in `mesh` itself (docs/api.md).
    const mesh = status.mesh;
    main.replaceChildren(h("div", {}, h("h1", {}, "Mesh and fleet"),
      mesh?.peer_id ? h("section", { class: "card" }, facts([
        ["Peer id", mesh.peer_id], ["Alive", mesh.alive], ["Suspect", mesh.suspect],
        ["Dead", mesh.dead], ["Quorate", mesh.quorate ? "yes" : "no", mesh.quorate ? "ok" : "bad"],
      ])) : h("p", { class: "muted" }, mesh?.error ?? "This node runs no mesh."),
      fleet ? [h("h2", {}, "Members"),
        h("div", { class: "card scroll" }, h("table", { id: "members" },
          h("thead", {}, h("tr", {}, ["Member", "State", "Generation", "Converged", "Failed", "Version"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, fleet.members.map((m) => h("tr", {},
            h("td", {}, m.node, m.this_node ? " (this node)" : ""),
            h("td", { class: m.live ? "ok" : "bad" }, m.live ? "live" : "lost"),
            h("td", {}, m.report?.node.generation ?? "-"),
            h("td", {}, m.report ? (m.report.node.converged ? "yes" : "no") : "-"),
            h("td", {}, m.report?.node.failed ?? "-"),
            h("td", {}, m.report?.node.version ?? "-")))))),
        h("h2", {}, "Rollout"),
        h("section", { class: "card" }, facts([
          ["State", fleet.rollout.state], ["Fleet generation", fleet.rollout.newest],
          ["On it, healthy", `${fleet.rollout.done} of ${fleet.rollout.members}`], ["This node", fleet.rollout.this_node],
        ]))] : null,
      h("h2", {}, "Mesh workloads"),
      h("div", { class: "card scroll" }, h("table", { id: "placement" },
        h("thead", {}, h("tr", {}, ["Workload", "Replicas", "Should run on", "Runs on", "Here"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (mesh?.placement?.workloads ?? []).map((w) => h("tr", {},
          h("td", {}, w.name), h("td", {}, w.replicas), h("td", {}, w.owners.join(", ") || "-"),
          h("td", {}, w.running_on.join(", ") || "-"), h("td", {}, w.here))))))));
  };
  view.update = view.draw;
  return view;
}

// ---- Routing ----

async function render() {
  currentView?.close?.();
  currentView = null;
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#${path}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (path === "/sign-in") return await signInView();
    if (!status) await loadStatus();
    const workload = /^\/workloads\/(.+)$/.exec(path);
    const view = workload ? workloadView(decodeURIComponent(workload[1]))
      : path === "/apply" ? applyView(new URLSearchParams(query ?? "").get("from"))
      : path === "/history" ? historyView()
      : path === "/mesh" ? meshView()
      : nodeView();
    currentView = view;
    await view.draw();
    if (!showing(view)) return;
    view.open?.();
    main.focus({ preventScroll: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    main.replaceChildren(h("p", { class: "bad" }, `The node did not answer: ${e.message}`));
  }
}

window.addEventListener("hashchange", render);
document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/v1/session"); } finally { signedOut(); }
});

// A session may be open already (the cookie outlives the page).
loadStatus().then(start, (e) => { if (!(e instanceof ApiError && e.status === 401)) signedOut(); });
