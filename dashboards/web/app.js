// tocsin web dashboard: polls the collector's API every 5 seconds and shows what it gets.
//
// Rules this file keeps:
// - every text from the API goes into the page through textContent or setAttribute, never
//   innerHTML, so nothing the API returns is ever parsed as HTML;
// - every failed request is shown to the user (the API's `error` field when it has one);
// - elements carry stable ids and data attributes (data-ticket, data-action, data-sla,
//   data-field) for tests/browser/dashboard.mjs.
'use strict';

const POLL_MS = 5000;
const TOKEN_KEY = 'tocsin.token';
const ACTOR_KEY = 'tocsin.actor'; // the name the ticket log records for an action
const SVG_NS = 'http://www.w3.org/2000/svg';

// The operator actions offered on a ticket, and the states that allow them (docs/TICKETS.md).
// The API has the last word: a refused action comes back as an error and is shown.
const WORKING = ['new', 'acknowledged', 'in_progress', 'pending'];
const ACTIONS = [
  { name: 'ack', label: 'Ack', states: ['new'] },
  { name: 'comment', label: 'Comment', states: [...WORKING, 'resolved'] },
  { name: 'escalate', label: 'Escalate', states: WORKING },
  { name: 'resolve', label: 'Resolve', states: WORKING },
];

// ---------------------------------------------------------------- small helpers

const $ = (selector) => document.querySelector(selector);

// An element with attributes and children; strings become text nodes (never HTML).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The same for SVG elements.
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// A duration in words: 45s, 12m 30s, 3h 05m, 2d 4h.
function duration(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// An RFC 3339 time from the API as local date and time ('' when absent).
function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function text(value) {
  return value === undefined || value === null || value === '' ? '–' : String(value);
}

// ---------------------------------------------------------------- the API

function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

// A JSON request to the collector; throws an Error with the API's message on any failure.
async function api(path, method = 'GET', body) {
  const headers = { Accept: 'application/json' };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && localStorage.getItem(ACTOR_KEY)) headers['X-Tocsin-Actor'] = localStorage.getItem(ACTOR_KEY);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new Error(`${method} ${path}: the collector does not answer (${e.message})`);
  }
  const raw = await response.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch {
    // Not JSON: reported below.
  }
  if (!response.ok) {
    const why = data && typeof data.error === 'string' ? data.error : raw || response.statusText;
    const hint = response.status === 401 ? ' (enter the API token at the top)' : '';
    throw new Error(`${method} ${path}: ${response.status} ${why}${hint}`);
  }
  if (data === null) throw new Error(`${method} ${path}: the answer is not JSON`);
  return data;
}

// ---------------------------------------------------------------- messages

// Errors of the last refresh (replaced by every refresh).
function showLoadErrors(errors) {
  const p = $('#load-error');
  p.textContent = errors.join('\n');
  p.hidden = errors.length === 0;
}

// The outcome of an operator action (kept until the next action or a click on it).
function showActionMessage(message, ok) {
  const p = $('#action-message');
  p.textContent = message;
  p.className = ok ? 'ok' : 'error';
  p.hidden = false;
}

// ---------------------------------------------------------------- rendering

function setCount(id, value, alarming) {
  const dd = document.getElementById(id);
  dd.textContent = text(value);
  dd.classList.toggle('breached', Boolean(alarming && value > 0));
}

function renderSummary(summary) {
  const now = summary.now || {};
  setCount('count-open-incidents', now.open_incidents, false);
  setCount('count-open-tickets', now.open_tickets, false);
  setCount('count-breached', now.breached_open_tickets, true);
  drawMttChart(summary.groups || []);
}

// A table body from rows, or one row saying there is nothing.
function fillTable(id, rows, columns, empty) {
  const body = document.querySelector(`#${id} tbody`);
  if (rows.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: columns, class: 'empty' }, empty)));
  } else {
    body.replaceChildren(...rows);
  }
}

function renderIncidents(incidents) {
  const rows = incidents.map((i) =>
    el('tr', { 'data-incident': i.id },
      el('td', { 'data-field': 'id' }, i.id),
      el('td', { 'data-field': 'priority', class: `priority ${i.priority}` }, i.priority),
      el('td', { 'data-field': 'title' }, text(i.title)),
      el('td', { 'data-field': 'root_cause', class: 'long', title: i.root_cause }, text(i.root_cause)),
      el('td', { 'data-field': 'symptoms', class: 'number' }, text(i.symptoms)),
      el('td', { 'data-field': 'ticket' }, text(i.ticket_number)),
      el('td', { 'data-field': 'opened_at' }, when(i.opened_at))));
  fillTable('incidents', rows, 7, 'no open incidents');
}

// One SLA target of a ticket: time left, met, paused, or breached (red).
//   which = 'response' (acknowledge in time) or 'resolution' (resolve in time).
function slaCell(t, which) {
  const due = t[`${which}_due_at`];
  const breachedAt = t[`${which}_breached_at`];
  const doneAt = which === 'response' ? t.acknowledged_at : t.resolved_at;
  const target = t.sla ? t.sla[`${which}_target_ms`] : undefined;
  let label;
  let breached = Boolean(breachedAt);
  if (breached) {
    // Once breached the API drops the due time; the breach time is when it fell due.
    label = doneAt ? 'breached' : `breached, ${duration(Date.now() - Date.parse(due || breachedAt))} over`;
  } else if (doneAt) {
    label = 'met';
  } else if (due) {
    const left = Date.parse(due) - Date.now();
    breached = left < 0;
    label = breached ? `overdue by ${duration(left)}` : `${duration(left)} left`;
  } else if (which === 'resolution' && t.state === 'pending') {
    label = 'paused';
  } else if (target === null) {
    label = 'no target';
  } else {
    label = '–';
  }
  return el('td', {
    'data-sla': which,
    'data-breached': breached ? 'true' : 'false',
    class: breached ? 'sla breached' : 'sla',
    title: [due && `due ${when(due)}`, breachedAt && `breached ${when(breachedAt)}`].filter(Boolean).join(', ') || undefined,
  }, label);
}

function actionButtons(t) {
  const buttons = ACTIONS.filter((a) => a.states.includes(t.state)).map((a) =>
    el('button', { type: 'button', 'data-action': a.name, 'data-ticket-number': t.number }, a.label));
  return el('td', { class: 'actions' }, ...buttons);
}

function renderTickets(tickets) {
  const rows = tickets.map((t) =>
    el('tr', { 'data-ticket': t.number, 'data-state': t.state, class: `state-${t.state}` },
      el('td', { 'data-field': 'number', class: 'key' }, t.number),
      el('td', { 'data-field': 'priority', class: `priority ${t.priority}` }, t.priority),
      el('td', { 'data-field': 'state' }, t.state),
      el('td', { 'data-field': 'summary', class: 'long', title: t.summary }, text(t.summary)),
      el('td', { 'data-field': 'assignee', class: 'key' }, text(t.assignee || t.assignment_group)),
      slaCell(t, 'response'),
      slaCell(t, 'resolution'),
      actionButtons(t)));
  fillTable('tickets', rows, 8, 'no tickets');
}

function renderProblems(problems) {
  const rows = problems.map((p) =>
    el('tr', { 'data-problem': p.number },
      el('td', { class: 'key' }, p.number),
      el('td', {}, p.state),
      el('td', { class: 'long', title: p.title }, text(p.title)),
      el('td', { class: 'number' }, text(p.incident_count)),
      el('td', {}, when(p.last_incident_at)),
      el('td', { class: 'long', title: p.workaround }, text(p.workaround))));
  fillTable('problems', rows, 6, 'no problem records');
}

function renderNodes(nodes) {
  const rows = nodes.map((n) =>
    el('tr', { 'data-node': `${n.site}/${n.node}` },
      el('td', {}, n.site),
      el('td', {}, n.node),
      el('td', {}, text(n.kind)),
      el('td', { class: `node-state ${n.state}` }, text(n.state)),
      el('td', {}, when(n.last_report_at) || 'never')));
  fillTable('nodes', rows, 5, 'no nodes have reported yet');
}

// ---------------------------------------------------------------- charts (inline SVG)

const CHART = { width: 600, height: 200, left: 40, right: 10, top: 20, bottom: 30 };

// Axes and the y scale of a bar chart; returns y(value) -> pixel.
function axes(chart, max, unit) {
  const { width, height, left, right, top, bottom } = CHART;
  const base = height - bottom;
  chart.append(
    svg('line', { x1: left, y1: base, x2: width - right, y2: base, class: 'axis' }),
    svg('line', { x1: left, y1: top, x2: left, y2: base, class: 'axis' }),
    svg('text', { x: left - 4, y: top + 4, class: 'tick', 'text-anchor': 'end' }, `${+max.toFixed(1)}`),
    svg('text', { x: left - 4, y: base, class: 'tick', 'text-anchor': 'end' }, '0'),
    svg('text', { x: 2, y: 12, class: 'tick' }, unit));
  return (v) => base - (v / max) * (base - top);
}

function noData(chart, message) {
  chart.append(svg('text', { x: CHART.width / 2, y: CHART.height / 2, class: 'tick', 'text-anchor': 'middle' }, message));
}

// Incidents per UTC day between `from` and `to`; days without incidents count zero.
function drawDailyChart(summary) {
  const chart = $('#chart-daily');
  chart.replaceChildren();
  const counts = new Map((summary.groups || []).map((g) => [g.key, g.incidents || 0]));
  const days = [];
  const end = new Date(summary.to);
  for (let d = new Date(summary.from); d <= end && days.length < 400; d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(d.toISOString().slice(0, 10));
  }
  if (days.length === 0) return noData(chart, 'no days in range');
  const max = Math.max(1, ...days.map((d) => counts.get(d) || 0));
  const y = axes(chart, max, 'incidents');
  const { width, left, right, height, bottom } = CHART;
  const step = (width - left - right) / days.length;
  days.forEach((day, i) => {
    const n = counts.get(day) || 0;
    const x = left + i * step;
    const bar = svg('rect', {
      x: x + 1, y: y(n), width: Math.max(1, step - 2), height: y(0) - y(n),
      class: 'bar', 'data-day': day, 'data-value': n,
    });
    bar.append(svg('title', {}, `${day}: ${n} incident${n === 1 ? '' : 's'}`));
    chart.append(bar);
    if ((days.length - 1 - i) % 7 === 0) { // a label every week, counted back from today
      chart.append(svg('text', { x: x + step / 2, y: height - bottom + 14, class: 'tick', 'text-anchor': 'middle' }, day.slice(5)));
    }
  });
}

// MTTA and MTTR side by side for each priority, in seconds, minutes or hours (whichever fits).
function drawMttChart(groups) {
  const chart = $('#chart-mtt');
  chart.replaceChildren();
  const all = groups.flatMap((g) => [g.mtta_ms, g.mttr_ms]).filter((v) => typeof v === 'number');
  if (all.length === 0) return noData(chart, 'no acknowledged or resolved tickets in the last 30 days');
  const longest = Math.max(...all);
  const [unit, perUnit] = longest < 120000 ? ['seconds', 1000] : longest < 3 * 3600000 ? ['minutes', 60000] : ['hours', 3600000];
  const scaled = (ms) => (typeof ms === 'number' ? ms / perUnit : null);
  const data = groups.map((g) => ({ key: g.key, mtta: scaled(g.mtta_ms), mttr: scaled(g.mttr_ms) }));
  const max = Math.max(longest / perUnit, 0.1);
  const y = axes(chart, max, unit);
  const { width, left, right, height, bottom } = CHART;
  const step = (width - left - right) / data.length;
  const barWidth = Math.min(40, step / 3);
  data.forEach((d, i) => {
    const middle = left + i * step + step / 2;
    [['mtta', d.mtta, middle - barWidth - 2], ['mttr', d.mttr, middle + 2]].forEach(([kind, v, x]) => {
      const shown = v === null ? '–' : v.toFixed(1);
      if (v !== null) {
        const bar = svg('rect', { x, y: y(v), width: barWidth, height: y(0) - y(v), class: `bar ${kind}`, 'data-key': d.key, 'data-kind': kind });
        bar.append(svg('title', {}, `${d.key} ${kind.toUpperCase()}: ${shown} ${unit}`));
        chart.append(bar);
      }
      chart.append(svg('text', { x: x + barWidth / 2, y: (v === null ? y(0) : y(v)) - 3, class: 'value', 'text-anchor': 'middle' }, shown));
    });
    chart.append(svg('text', { x: middle, y: height - bottom + 14, class: 'tick', 'text-anchor': 'middle' }, d.key));
  });
  // Legend.
  chart.append(
    svg('rect', { x: width - 150, y: 4, width: 10, height: 10, class: 'bar mtta' }),
    svg('text', { x: width - 136, y: 13, class: 'tick' }, 'MTTA'),
    svg('rect', { x: width - 90, y: 4, width: 10, height: 10, class: 'bar mttr' }),
    svg('text', { x: width - 76, y: 13, class: 'tick' }, 'MTTR'));
}

// ---------------------------------------------------------------- polling

// What one refresh reads, and what draws each answer.
const SOURCES = [
  ['/api/v1/analytics/summary?group_by=priority', renderSummary],
  ['/api/v1/analytics/summary?group_by=day', drawDailyChart],
  ['/api/v1/incidents?state=open', renderIncidents],
  ['/api/v1/tickets?limit=200', renderTickets],
  ['/api/v1/problems', renderProblems],
  ['/api/v1/nodes', renderNodes],
];

let latest = 0; // number of the newest refresh; an older one that ends late is dropped

async function refresh() {
  const mine = ++latest;
  const results = await Promise.allSettled(SOURCES.map(([path]) => api(path)));
  if (mine !== latest) return;
  const errors = [];
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      errors.push(r.reason.message);
      return;
    }
    try {
      SOURCES[i][1](r.value);
    } catch (e) {
      errors.push(`${SOURCES[i][0]}: cannot show the answer (${e.message})`);
    }
  });
  showLoadErrors(errors);
  const stamp = $('#updated-at');
  const now = new Date();
  stamp.textContent = now.toLocaleTimeString();
  stamp.setAttribute('datetime', now.toISOString());
  stamp.classList.toggle('stale', errors.length > 0);
}

async function poll() {
  try {
    await refresh();
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// ---------------------------------------------------------------- operator actions

async function act(number, action, body) {
  try {
    const t = await api(`/api/v1/tickets/${encodeURIComponent(number)}/${action}`, 'POST', body);
    showActionMessage(`${number}: ${action} accepted (state: ${t.state})`, true);
    await refresh();
    return null;
  } catch (e) {
    showActionMessage(e.message, false);
    return e.message;
  }
}

// The dialog for the actions that need text: which fields each one shows and sends.
const dialog = {
  number: null,
  action: null,
  open(number, action) {
    this.number = number;
    this.action = action;
    const form = $('#action-form');
    form.reset();
    for (const label of form.querySelectorAll('label[data-for]')) label.hidden = label.dataset.for !== action;
    $('#action-title').textContent = `${action} ${number}`;
    $('#action-error').hidden = true;
    $('#action-dialog').showModal();
    form.querySelector(`label[data-for="${action}"] textarea, label[data-for="${action}"] input`).focus();
  },
  body() {
    const f = $('#action-form').elements;
    switch (this.action) {
      case 'comment': return { text: f.text.value };
      case 'escalate': return { reason: f.reason.value, complaint: f.complaint.checked };
      case 'resolve': return { notes: f.notes.value, cause_code: f.cause_code.value };
      default: return {};
    }
  },
};

function setUp() {
  // The name and token fields: saved in localStorage; the token is sent as
  // Authorization: Bearer <token>, the name as X-Tocsin-Actor with every action.
  $('#token').value = token();
  $('#actor').value = localStorage.getItem(ACTOR_KEY) || '';
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const save = (key, value) => (value ? localStorage.setItem(key, value) : localStorage.removeItem(key));
    const value = $('#token').value.trim();
    save(TOKEN_KEY, value);
    save(ACTOR_KEY, $('#actor').value.trim());
    showActionMessage(value ? 'token saved' : 'no token: reads and writes go without one', true);
    refresh();
  });
  $('#token-clear').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    $('#token').value = '';
    showActionMessage('token removed', true);
    refresh();
  });
  $('#action-message').addEventListener('click', (e) => { e.currentTarget.hidden = true; });

  // One listener for every action button (the rows are redrawn on each refresh).
  $('#tickets').addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-action]');
    if (!button) return;
    const { action, ticketNumber } = button.dataset;
    if (action === 'ack') {
      button.disabled = true;
      await act(ticketNumber, 'ack', {});
      button.disabled = false;
    } else {
      dialog.open(ticketNumber, action);
    }
  });
  $('#action-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const send = $('#action-send');
    send.disabled = true;
    const failed = await act(dialog.number, dialog.action, dialog.body());
    send.disabled = false;
    if (failed) {
      $('#action-error').textContent = failed;
      $('#action-error').hidden = false;
    } else {
      $('#action-dialog').close();
    }
  });
  $('#action-cancel').addEventListener('click', () => $('#action-dialog').close());

  poll();
}

setUp();
