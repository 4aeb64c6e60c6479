// The nubes console: a hash-routed single page over /_nubes/console/api/*.
import { drawGraph, COLORS } from "./graph.js";

const API = "/_nubes/console/api/";
const main = document.getElementById("main");

/** Build an element: h("a", {href: "#"}, "text", child, ...). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {}
/** The console answered 401 SignInRequired: the sign-in form is on screen instead. */
class SignInRequired extends ApiError {}

async function api(name, params = {}, options = {}) {
  const all = { region: localStorage.getItem("nubes.region") || "", ...params };
  const qs = new URLSearchParams(Object.entries(all).filter(([, v]) => v !== undefined && v !== "")).toString();
  const headers = options.method && options.method !== "GET" ? { "X-Nubes-Console": "1" } : {};
  const response = await fetch(API + name + (qs ? "?" + qs : ""), { ...options, headers });
  let doc;
  try { doc = await response.json(); } catch { throw new ApiError(`${response.status} ${response.statusText}`); }
  if (response.status === 401 && doc.error && doc.error.code === "SignInRequired") {
    showSignIn();
    throw new SignInRequired(doc.error.message);
  }
  if (!response.ok || doc.error) {
    const e = doc.error || {};
    throw new ApiError(`${e.code || response.status}: ${e.message || response.statusText}`);
  }
  return doc;
}

const errorBox = (e) => h("div", { class: "error" }, String(e.message || e));
const badge = (s) => h("span", { class: `badge s-${s}` }, s ?? "—");
const link = (href, text) => h("a", { href }, text);
const when = (v) => (v ? new Date(typeof v === "number" ? v * (v < 1e12 ? 1000 : 1) : v).toLocaleString() : "—");
const enc = encodeURIComponent;

function table(headers, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node ? h("td", {}, c) : h("td", {}, c ?? "—")))))));
}

function cards(pairs) {
  return h("div", { class: "cards" }, pairs.map(([k, v]) => h("div", { class: "card" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v ?? "—"))));
}

/** Render a panel: title, then whatever `build` returns, or the error it threw. */
async function panel(title, build) {
  const token = (panel.token = (panel.token || 0) + 1);
  main.replaceChildren(h("h1", {}, title), h("p", { class: "muted" }, "Loading…"));
  let body;
  try { body = await build(); } catch (e) {
    if (e instanceof SignInRequired) return; // the form replaced this panel
    body = errorBox(e);
  }
  if (token === panel.token) main.replaceChildren(h("h1", {}, title), ...[body].flat(Infinity).filter((x) => x !== null && x !== undefined));
}

// -- views -----------------------------------------------------------------------

const views = {
  async overview() {
    const { health, usage } = await api("overview");
    document.getElementById("endpoint").textContent = health.endpoint;
    return [
      cards([["Version", health.version], ["Status", health.status], ["Endpoint", health.endpoint], ["Region", health.region],
        ["Account", health.account_id], ["Store", health.store], ["Invocations", usage.requests ?? 0], ["GB-seconds", usage.gb_seconds ?? 0]]),
      h("h2", {}, "Services"),
      table(["Service", "State"], Object.entries(health.services).map(([k, v]) => [k, badge(v)])),
    ];
  },

  async functions() {
    const { functions } = await api("functions");
    return table(["Name", "State", "Runtime", "Memory", "Reserved", "Busy/instances", "Invocations", "Errors", "Last invocation"],
      functions.map((f) => [link(`#/function/${enc(f.FunctionName)}`, f.FunctionName), badge(f.State), f.Runtime || f.PackageType,
        `${f.MemorySize} MB`, f.Concurrency?.ReservedConcurrentExecutions ?? "—", f.Usage ? `${f.Usage.busy}/${f.Usage.instances}` : "0", f.Usage?.requests ?? 0, f.Usage?.errors ?? 0, when(f.Usage?.last_invocation)]),
      "No functions yet.");
  },

  async function(name) {
    const doc = await api("function", { name });
    const c = doc.function.Configuration;
    const payload = h("textarea", { id: "payload" }, "{}");
    const out = h("div", { id: "invoke-result" });
    const invoke = async () => {
      out.replaceChildren(h("p", { class: "muted" }, "Invoking…"));
      try {
        const r = await api("invoke", { name }, { method: "POST", body: payload.value });
        out.replaceChildren(h("div", { class: "toolbar" }, "Status ", badge(r.FunctionError ? "FAILED" : "SUCCEEDED"), ` ${r.StatusCode}`),
          h("pre", { class: "result" }, r.Payload), h("h2", {}, "Log tail"), h("pre", {}, r.Logs));
      } catch (e) { out.replaceChildren(errorBox(e)); }
    };
    return [
      cards([["State", c.State], ["Runtime", c.Runtime || c.PackageType], ["Handler", c.Handler], ["Memory", `${c.MemorySize} MB`],
        ["Timeout", `${c.Timeout} s`], ["Reserved concurrency", doc.function.Concurrency?.ReservedConcurrentExecutions ?? "unreserved"]]),
      h("p", { class: "mono" }, c.FunctionArn),
      h("div", { class: "split" },
        h("div", {}, h("h2", {}, "Recent logs"), doc.logs_error ? h("p", { class: "muted" }, doc.logs_error.message)
          : h("pre", {}, doc.events.map((e) => `${new Date(e.timestamp).toISOString()}  ${e.message.trimEnd()}`).join("\n") || "(no log events)")),
        h("div", {}, h("h2", {}, "Invoke"), payload, h("div", { class: "toolbar" }, h("button", { onclick: invoke }, "Invoke")), out)),
    ];
  },

  async apis() {
    const { apis } = await api("apis");
    return table(["Name", "Id", "Kind", "Invoke URLs", "Created"],
      apis.map((a) => [a.name, a.id, a.kind, h("div", {}, a.urls.map((u) => h("div", { class: "mono" }, u.startsWith("http") ? link(u, u) : u))), when(a.created)]),
      "No APIs yet.");
  },

  async tables() {
    const { tables } = await api("tables");
    return table(["Table", "Status", "Keys", "Items", "Size"],
      tables.map((t) => [link(`#/table/${enc(t.TableName)}`, t.TableName), badge(t.TableStatus),
        t.KeySchema.map((k) => `${k.AttributeName} (${k.KeyType})`).join(", "), t.ItemCount, `${t.TableSizeBytes} B`]), "No tables yet.");
  },

  async table(name, start) {
    const doc = await api("table", { name, start });
    const cols = [...new Set(doc.Items.flatMap((i) => Object.keys(i)))].slice(0, 12);
    const show = (v) => {
      if (!v) return "";
      const [type, value] = Object.entries(v)[0];
      return type === "S" || type === "N" ? value : `${type}: ${JSON.stringify(value)}`;
    };
    const next = doc.LastEvaluatedKey ? link(`#/table/${enc(name)}/${enc(JSON.stringify(doc.LastEvaluatedKey))}`, "Next page →") : null;
    return [h("p", { class: "muted" }, `${doc.Count} items on this page (scanned ${doc.ScannedCount}).`),
      table(cols, doc.Items.map((i) => cols.map((c) => h("span", { class: "mono" }, show(i[c])))), "The table is empty."), next];
  },

  async buckets() {
    const { buckets } = await api("buckets");
    return table(["Bucket", "Created"], buckets.map((b) => [link(`#/objects/${enc(b.Name)}/`, b.Name), when(b.CreationDate)]), "No buckets yet.");
  },

  async objects(bucket, prefix = "", token = "") {
    const doc = await api("objects", { bucket, prefix, token });
    const up = prefix ? prefix.replace(/[^/]*\/$/, "") : null;
    const rows = [
      ...(doc.CommonPrefixes || []).map((p) => [link(`#/objects/${enc(bucket)}/${enc(p.Prefix)}`, p.Prefix.slice(prefix.length)), "folder", "", ""]),
      ...(doc.Contents || []).map((o) => [o.Key.slice(prefix.length), `${o.Size} B`, when(o.LastModified),
        link(`${API}object?bucket=${enc(bucket)}&key=${enc(o.Key)}`, "download")]),
    ];
    return [h("p", { class: "mono" }, `s3://${bucket}/${prefix}`), up !== null ? link(`#/objects/${enc(bucket)}/${enc(up)}`, "↑ up") : null,
      table(["Key", "Size", "Modified", ""], rows, "No objects under this prefix."),
      doc.NextContinuationToken ? link(`#/objects/${enc(bucket)}/${enc(prefix)}/${enc(doc.NextContinuationToken)}`, "Next page →") : null];
  },

  async queues() {
    const { queues } = await api("queues");
    return table(["Queue", "Visible", "In flight", "Delayed", "URL"], queues.map((q) => [q.Name, q.ApproximateNumberOfMessages,
      q.ApproximateNumberOfMessagesNotVisible, q.ApproximateNumberOfMessagesDelayed, h("span", { class: "mono" }, q.QueueUrl)]), "No queues yet.");
  },

  async topics() {
    const { topics } = await api("topics");
    return table(["Topic", "Subscriptions", "ARN"], topics.map((t) => [t.Name,
      h("div", {}, t.Subscriptions.map((s) => h("div", { class: "mono" }, `${s.Protocol}: ${s.Endpoint}`))), h("span", { class: "mono" }, t.TopicArn)]), "No topics yet.");
  },

  async rules() {
    const { buses, rules } = await api("rules");
    return [h("p", { class: "muted" }, `Event buses: ${buses.map((b) => b.Name).join(", ")}`),
      table(["Rule", "Bus", "State", "Pattern / schedule", "Targets"], rules.map((r) => [r.Name, r.EventBusName, badge(r.State),
        h("span", { class: "mono" }, r.EventPattern || r.ScheduleExpression || ""), h("div", {}, r.Targets.map((t) => h("div", { class: "mono" }, t.Arn)))]), "No rules yet.")];
  },

  async userpools() {
    const { pools } = await api("userpools");
    return table(["Pool", "Id", "Created"], pools.map((p) => [link(`#/users/${enc(p.Id)}`, p.Name), p.Id, when(p.CreationDate)]), "No user pools yet.");
  },

  async users(pool) {
    const { Users } = await api("users", { pool });
    return table(["User", "Status", "Enabled", "Attributes", "Created"], Users.map((u) => [u.Username, badge(u.UserStatus), String(u.Enabled),
      h("span", { class: "mono" }, (u.Attributes || []).map((a) => `${a.Name}=${a.Value}`).join(" ")), when(u.UserCreateDate)]), "No users in this pool.");
  },

  async statemachines() {
    const { machines } = await api("statemachines");
    return table(["State machine", "Type", "Created"], machines.map((m) => [link(`#/executions/${enc(m.stateMachineArn)}`, m.name), m.type, when(m.creationDate)]),
      "No state machines yet.");
  },

  async executions(arn, status = "") {
    const doc = await api("executions", { arn, status });
    const select = h("select", { onchange: (e) => (location.hash = `#/executions/${enc(arn)}/${e.target.value}`) },
      ["", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].map((s) => h("option", { value: s, selected: s === status }, s || "all statuses")));
    return [h("p", { class: "mono" }, arn), h("div", { class: "toolbar" }, "Status ", select),
      table(["Execution", "Status", "Started", "Stopped"], doc.executions.map((e) => [link(`#/execution/${enc(e.executionArn)}`, e.name), badge(e.status),
        when(e.startDate), when(e.stopDate)]), "No executions.")];
  },

  async execution(arn) {
    const doc = await api("execution", { arn });
    const x = doc.execution;
    const detail = h("div", { id: "state-detail" }, h("p", { class: "muted" }, "Click a state to see its events."));
    const select = (node) => {
      const mine = doc.events.filter((e) => JSON.stringify(e).includes(`"name":${JSON.stringify(node.name)}`));
      detail.replaceChildren(h("h2", {}, `${node.name} `, badge(node.status)), h("pre", {}, mine.map((e) => JSON.stringify(e, null, 1)).join("\n") || "(no events)"));
    };
    if (x.status === "RUNNING") {
      const here = location.hash;
      setTimeout(() => { if (location.hash === here) route(); }, 2000);
    }
    const legend = h("div", { class: "legend" }, Object.entries(COLORS).map(([k, [c, b]]) => h("span", { style: `--c:${c};--b:${b}` }, k)));
    return [
      cards([["Status", x.status], ["Started", when(x.startDate)], ["Stopped", when(x.stopDate)], ["Name", x.name]]),
      x.error ? h("div", { class: "error" }, x.cause ? `${x.error}: ${x.cause}` : x.error) : null,
      h("div", { class: "split" },
        h("div", {}, h("h2", {}, "Graph"), legend, h("div", { class: "graph", id: "graph" }, drawGraph(doc.graph, select))),
        h("div", {}, detail, h("h2", {}, "Input"), h("pre", {}, x.input || ""), h("h2", {}, "Output"), h("pre", {}, x.output || ""))),
      h("h2", {}, "History"),
      doc.events_total > doc.events.length ? h("p", { class: "muted" }, `The first ${doc.events.length} of ${doc.events_total} events.`) : null,
      table(["#", "Type", "Time", "Details"], doc.events.map((e) => [e.id, e.type, when(e.timestamp),
        h("span", { class: "mono" }, JSON.stringify(Object.fromEntries(Object.entries(e).filter(([k]) => k.endsWith("Details")))).slice(0, 300))])),
    ];
  },

  async mail() {
    const { messages } = await api("mail");
    const clear = async () => { try { await api("mail", {}, { method: "DELETE" }); route(); } catch (e) { main.append(errorBox(e)); } };
    const show = (m) => {
      const body = m.Body || {};
      const html = body.Html?.Data ?? body.Html ?? m.Html;
      const text = body.Text?.Data ?? body.Text ?? m.Text ?? m.Body;
      return h("div", { class: "mail" }, h("div", { class: "subject" }, m.Subject?.Data ?? m.Subject ?? "(no subject)"),
        h("div", { class: "muted" }, `From ${m.Source} to ${[].concat(m.Destination || []).join(", ")} · ${when(m.Timestamp)}`),
        html ? h("iframe", { sandbox: "", srcdoc: String(html) }) : h("pre", {}, typeof text === "string" ? text : JSON.stringify(text, null, 1)));
    };
    return [h("div", { class: "toolbar" }, h("button", { class: "secondary", onclick: clear }, "Clear mailbox"), `${messages.length} messages`),
      messages.length ? messages.map(show) : h("p", { class: "muted" }, "No mail sent yet.")];
  },

  async stacks() {
    const { stacks } = await api("stacks");
    return table(["Stack", "Status", "Created", "Description"], stacks.map((s) => [link(`#/stack/${enc(s.StackName)}`, s.StackName), badge(s.StackStatus),
      when(s.CreationTime), s.Description]), "No stacks yet.");
  },

  async stack(name) {
    const doc = await api("stack", { name });
    return [
      cards([["Status", doc.stack.StackStatus], ["Created", when(doc.stack.CreationTime)]]),
      h("h2", {}, "Outputs"), table(["Key", "Value", "Description"], (doc.stack.Outputs || []).map((o) => [o.OutputKey, h("span", { class: "mono" }, o.OutputValue), o.Description])),
      h("h2", {}, "Resources"), table(["Logical id", "Type", "Physical id", "Status"], doc.resources.map((r) => [r.LogicalResourceId, r.ResourceType,
        h("span", { class: "mono" }, r.PhysicalResourceId), badge(r.ResourceStatus)])),
      h("h2", {}, "Events"), table(["Time", "Resource", "Status", "Reason"], doc.events.map((e) => [when(e.Timestamp), e.LogicalResourceId, badge(e.ResourceStatus), e.ResourceStatusReason])),
    ];
  },
};

const TITLES = { overview: "Overview", functions: "Functions", function: "Function", apis: "APIs", tables: "DynamoDB tables", table: "Table",
  buckets: "S3 buckets", objects: "Objects", queues: "SQS queues", topics: "SNS topics", rules: "EventBridge rules", userpools: "Cognito user pools",
  users: "Users", statemachines: "State machines", executions: "Executions", execution: "Execution", mail: "Mailbox (SES)", stacks: "Stacks", stack: "Stack" };
const SECTION = { function: "functions", table: "tables", objects: "buckets", users: "userpools", executions: "statemachines", execution: "statemachines", stack: "stacks" };

function route() {
  const [name = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  // arguments are URI-encoded, so an S3 prefix or an ARN with slashes stays one argument
  const view = views[name] ? name : "overview";
  const args = rest.map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${SECTION[view] || view}`);
  const title = TITLES[view] + (args[0] && view !== "executions" ? `: ${args[0].split(":").pop()}` : "");
  panel(title, () => views[view](...args));
}

// -- sign-in -----------------------------------------------------------------------
// A client off this machine signs in with an access key pair nubes accepts; the
// session lives in an HttpOnly cookie the page never sees.

/** Replace the page's panel with the sign-in form (once, however many calls were refused). */
function showSignIn() {
  panel.token = (panel.token || 0) + 1; // a panel still loading must not replace the form
  if (document.getElementById("signin")) return;
  const field = (label, name, type = "text", extra = {}) => h("label", {}, label,
    h("input", { type, name, autocomplete: "off", spellcheck: "false", ...extra }));
  const message = h("div", { class: "error", hidden: true });
  const form = h("form", { id: "signin", class: "signin" },
    h("p", { class: "muted" }, "This nubes requires signed requests. Sign in with an access key id and secret access key it accepts (the credentials your SDK uses)."),
    field("Access key id", "accessKeyId", "text", { required: true, autofocus: true }),
    field("Secret access key", "secretAccessKey", "password", { required: true }),
    field("Session token (temporary credentials only)", "sessionToken"),
    message, h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (!data.sessionToken) delete data.sessionToken;
    message.hidden = true;
    let doc = {};
    const response = await fetch(API + "signin", { method: "POST", body: JSON.stringify(data),
      headers: { "X-Nubes-Console": "1", "Content-Type": "application/json" } });
    try { doc = await response.json(); } catch { doc = {}; }
    if (!response.ok) {
      message.textContent = (doc.error && doc.error.message) || `${response.status} ${response.statusText}`;
      message.hidden = false;
      return;
    }
    showSession(doc);
    route();
    loadRegions();
  });
  main.replaceChildren(h("h1", {}, "Sign in"), form);
}

/** The header's "signed in as" and sign-out button, when this client has a session. */
function showSession(state) {
  const box = document.getElementById("session");
  if (!state.signed_in) { box.replaceChildren(); return; }
  const out = async () => {
    await fetch(API + "signout", { method: "POST", headers: { "X-Nubes-Console": "1" } });
    box.replaceChildren();
    showSignIn();
  };
  box.replaceChildren(h("span", { class: "who" }, state.access_key), h("button", { class: "secondary", id: "signout", onclick: out }, "Sign out"));
}

const REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"];
function loadRegions() {
  api("overview").then((d) => {
    document.getElementById("endpoint").textContent = d.health.endpoint;
    const current = localStorage.getItem("nubes.region") || d.health.region;
    const select = document.getElementById("region");
    select.replaceChildren(...[...new Set([d.health.region, current, ...REGIONS])].map((r) => h("option", { value: r, selected: r === current }, r)));
    select.onchange = () => { localStorage.setItem("nubes.region", select.value); route(); };
  }).catch(() => {});
}

window.addEventListener("hashchange", route);
route();
loadRegions();
api("session").then(showSession).catch(() => {});
