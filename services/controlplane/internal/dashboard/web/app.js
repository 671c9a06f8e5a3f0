// OpenSandbox dashboard. Plain ES module: no build step, no framework.
// Server data only ever reaches the DOM through textContent / text nodes,
// never innerHTML, so nothing the API returns can inject markup.

const API = '/dashboard/api';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API ----

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// request performs one same-origin API call and returns the parsed JSON
// body (null for 204). Non-2xx answers become ApiError with the server's
// message so callers can show it as is.
async function request(method, url, body) {
  const headers = { Accept: 'application/json' };
  // Every mutating request must carry this header: the server uses it as
  // its CSRF defence, since a cross-site form cannot set custom headers.
  if (method !== 'GET') headers['X-OSB-Dashboard'] = '1';
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }

  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new ApiError(0, 'Could not reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const message = (data && data.error) || `Request failed (${res.status} ${res.statusText}).`;
    throw new ApiError(res.status, message, data && data.code);
  }
  return data;
}

// handleError is the single place failures end up: a 401 means the
// session is gone, anything else is shown in the error area.
function handleError(err) {
  if (err instanceof ApiError && err.status === 401) {
    showSignedOut();
    return;
  }
  showError(err && err.message ? err.message : String(err));
}

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

const clearError = () => showError('');

// ------------------------------------------------------------ helpers ----

// el builds an element; string children become text nodes via append().
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const DASH = '—';

// formatTime shows an RFC 3339 timestamp in the viewer's local time; an
// unparsable value is shown raw rather than as "Invalid Date".
function formatTime(value) {
  if (!value) return DASH;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function messageRow(id, columns, text) {
  return el('tr', { id, class: 'empty' }, el('td', { colspan: String(columns) }, text));
}

// Each list load gets a sequence number so that a slow, older response
// (e.g. after the filter changed twice quickly, or after sign-out) cannot
// overwrite newer content.
const seq = { sessions: 0, keys: 0, commands: 0 };

// The signed-in user: members may revoke only the keys they made (the
// server enforces it; the page just does not offer what would be refused).
let me = null;

function canRevoke(key) {
  if (!me || !me.user) return false;
  return me.user.role === 'owner' || me.user.role === 'admin' || key.createdBy === me.user.id;
}

// -------------------------------------------------------------- views ----

function showSignedIn(who) {
  me = who;
  $('loading').hidden = true;
  $('org-name').textContent = me.org ? me.org.name : '';
  $('user-email').textContent = me.user ? me.user.email : '';
  const org = me.org || {};
  $('org-limits').textContent = org.maxConcurrentSandboxes !== undefined
    ? `Up to ${org.maxConcurrentSandboxes} sandboxes at once, each for up to ${org.maxSandboxTimeoutSec} s.`
    : '';
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  selectTab('sandboxes');
}

function showSignedOut() {
  seq.sessions++;
  seq.keys++;
  me = null;
  hideCommands();
  $('org-limits').textContent = '';
  $('loading').hidden = true;
  $('signed-in').hidden = true;
  $('signed-out').hidden = false;
  clearError();
  // Drop everything belonging to the old session, especially a key secret.
  $('org-name').textContent = '';
  $('user-email').textContent = '';
  $('sessions-table').tBodies[0].replaceChildren();
  $('keys-table').tBodies[0].replaceChildren();
  $('refresh').disabled = false;
  hideNewKey();
}

const TABS = ['sandboxes', 'keys'];

function selectTab(name) {
  for (const tab of TABS) {
    const active = tab === name;
    const button = $(`tab-${tab}`);
    button.classList.toggle('active', active);
    button.setAttribute('aria-selected', String(active));
    $(tab).hidden = !active;
  }
  clearError();
  // Reload on every switch so the visible list is never stale.
  if (name === 'keys') loadKeys();
  else loadSessions();
}

// ---------------------------------------------------------- sandboxes ----

const KNOWN_STATUSES = new Set(['running', 'stopped', 'error']);

function sessionRow(s) {
  const statusCell = el('td', { class: 'status' }, s.status || '');
  // Modifier class only for known values so server text never becomes
  // arbitrary class names.
  if (KNOWN_STATUSES.has(s.status)) statusCell.classList.add(`status-${s.status}`);
  if (s.errorMsg) statusCell.title = s.errorMsg;

  const actions = el('td', { class: 'actions-cell' });
  if (s.status === 'running') {
    const button = el('button', { type: 'button', class: 'button danger kill' }, 'Kill');
    button.addEventListener('click', (e) => {
      e.stopPropagation(); // not a click on the row (which opens the history)
      killSandbox(s.sandboxID, button);
    });
    actions.append(button);
  }

  const row = el('tr', {},
    el('td', {}, el('code', {}, s.sandboxID || '')),
    el('td', {}, s.template || DASH),
    statusCell,
    el('td', {}, formatTime(s.startedAt)),
    el('td', {}, formatTime(s.stoppedAt || s.endAt)),
    el('td', {}, s.region || DASH),
    actions,
  );
  row.dataset.sandboxId = s.sandboxID || '';
  // A row opens the sandbox's command history, by mouse or keyboard.
  row.classList.add('clickable');
  row.tabIndex = 0;
  row.addEventListener('click', () => showCommands(s.sandboxID));
  row.addEventListener('keydown', (e) => { if (e.key === 'Enter') showCommands(s.sandboxID); });
  return row;
}

async function killSandbox(sandboxID, button) {
  if (!window.confirm(`Kill sandbox ${sandboxID}? Whatever runs in it stops.`)) return;
  clearError();
  button.disabled = true;
  try {
    await request('DELETE', `${API}/sandboxes/${encodeURIComponent(sandboxID)}`);
    await loadSessions();
  } catch (err) {
    button.disabled = false;
    handleError(err);
  }
}

// ----------------------------------------------------------- commands ----

function formatBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function commandRow(c) {
  const line = [c.command || '', ...(c.args || [])].join(' ');
  const exit = el('td', { class: `exit ${c.exitCode === 0 ? 'exit-ok' : 'exit-fail'}` }, String(c.exitCode));
  return el('tr', {},
    el('td', {}, el('code', {}, line)),
    exit,
    el('td', {}, `${c.durationMs} ms`),
    el('td', {}, `${formatBytes(c.stdoutLen)} out, ${formatBytes(c.stderrLen)} err`),
    el('td', {}, formatTime(c.createdAt)),
  );
}

async function showCommands(sandboxID) {
  if (!sandboxID) return;
  const mine = ++seq.commands;
  clearError();
  $('detail-sandbox-id').textContent = sandboxID;
  $('commands-table').tBodies[0].replaceChildren();
  $('sandbox-detail').hidden = false;
  try {
    const list = await request('GET', `${API}/sessions/${encodeURIComponent(sandboxID)}/commands?limit=100`);
    if (mine !== seq.commands) return;
    const rows = Array.isArray(list) ? list : [];
    $('commands-table').tBodies[0].replaceChildren(...(rows.length
      ? rows.map(commandRow)
      : [messageRow('commands-empty', 5, 'No commands recorded yet.')]));
  } catch (err) {
    if (mine === seq.commands) handleError(err);
  }
}

function hideCommands() {
  seq.commands++;
  $('sandbox-detail').hidden = true;
  $('detail-sandbox-id').textContent = '';
  $('commands-table').tBodies[0].replaceChildren();
}

async function loadSessions() {
  const mine = ++seq.sessions;
  const status = $('status-filter').value;
  const params = new URLSearchParams({ limit: '100' });
  if (status) params.set('status', status);

  const refresh = $('refresh');
  refresh.disabled = true;
  try {
    const sessions = await request('GET', `${API}/sessions?${params}`);
    if (mine !== seq.sessions) return;
    const list = Array.isArray(sessions) ? sessions : [];
    const body = $('sessions-table').tBodies[0];
    body.replaceChildren(...(list.length
      ? list.map(sessionRow)
      : [messageRow('sessions-empty', 7, 'No sandboxes yet.')]));
  } catch (err) {
    if (mine === seq.sessions) handleError(err);
  } finally {
    if (mine === seq.sessions) refresh.disabled = false;
  }
}

// --------------------------------------------------------------- keys ----

function keyRow(k) {
  const revoked = Boolean(k.revokedAt);
  const actions = el('td', { class: 'actions-cell' });
  if (!revoked && canRevoke(k)) {
    const button = el('button', { type: 'button', class: 'button danger revoke' }, 'Revoke');
    button.addEventListener('click', () => revokeKey(k, button));
    actions.append(button);
  }

  const row = el('tr', {},
    el('td', {}, k.name || ''),
    el('td', {}, el('code', {}, `${k.prefix || ''}…`)),
    el('td', {}, (k.scopes || []).join(', ')),
    el('td', {}, formatTime(k.createdAt)),
    el('td', {}, k.lastUsed ? formatTime(k.lastUsed) : 'never'),
    el('td', { class: `key-status ${revoked ? 'is-revoked' : 'is-active'}` }, revoked ? 'revoked' : 'active'),
    actions,
  );
  row.dataset.keyId = k.id || '';
  if (revoked) row.classList.add('revoked');
  return row;
}

async function loadKeys() {
  const mine = ++seq.keys;
  try {
    const keys = await request('GET', `${API}/keys`);
    if (mine !== seq.keys) return;
    const list = Array.isArray(keys) ? keys : [];
    const body = $('keys-table').tBodies[0];
    body.replaceChildren(...(list.length
      ? list.map(keyRow)
      : [messageRow('keys-empty', 7, 'No API keys yet.')]));
  } catch (err) {
    if (mine === seq.keys) handleError(err);
  }
}

async function createKey(event) {
  event.preventDefault();
  clearError();
  const name = $('key-name').value.trim();
  if (!name) {
    showError('Please enter a name for the key.');
    return;
  }
  const submit = $('create-key');
  submit.disabled = true;
  try {
    const created = await request('POST', `${API}/keys`, {
      name,
      scopes: [$('key-scope').value],
    });
    $('create-key-form').reset();
    showNewKey(created && created.secret ? created.secret : '');
    await loadKeys();
  } catch (err) {
    handleError(err);
  } finally {
    submit.disabled = false;
  }
}

async function revokeKey(key, button) {
  if (!window.confirm(`Revoke key ${key.name}?`)) return;
  clearError();
  button.disabled = true;
  try {
    await request('DELETE', `${API}/keys/${encodeURIComponent(key.id)}`);
    await loadKeys();
  } catch (err) {
    button.disabled = false;
    handleError(err);
  }
}

function showNewKey(secret) {
  $('new-key-secret').textContent = secret;
  $('new-key-copy').textContent = 'Copy';
  $('new-key').hidden = false;
}

// Clearing the text (not just hiding it) keeps the secret out of the DOM
// once the user has dismissed it.
function hideNewKey() {
  $('new-key').hidden = true;
  $('new-key-secret').textContent = '';
}

async function copySecret() {
  const secret = $('new-key-secret').textContent;
  if (!secret || !navigator.clipboard) return;
  try {
    await navigator.clipboard.writeText(secret);
    $('new-key-copy').textContent = 'Copied';
  } catch {
    // Clipboard access can be denied; the secret is still selectable.
  }
}

// ------------------------------------------------------------ session ----

async function signOut() {
  clearError();
  const button = $('signout');
  button.disabled = true;
  try {
    await request('POST', '/auth/logout');
    showSignedOut();
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  try {
    const who = await request('GET', `${API}/me`);
    showSignedIn(who || {});
  } catch (err) {
    // On a non-401 failure neither view is shown; the error says why.
    $('loading').hidden = true;
    handleError(err);
  }
}

function wire() {
  $('tab-sandboxes').addEventListener('click', () => selectTab('sandboxes'));
  $('tab-keys').addEventListener('click', () => selectTab('keys'));
  $('status-filter').addEventListener('change', () => { clearError(); loadSessions(); });
  $('refresh').addEventListener('click', () => { clearError(); loadSessions(); });
  $('detail-close').addEventListener('click', hideCommands);
  $('create-key-form').addEventListener('submit', createKey);
  $('new-key-copy').addEventListener('click', copySecret);
  $('new-key-done').addEventListener('click', hideNewKey);
  $('signout').addEventListener('click', signOut);
}

// Module scripts are deferred, so the DOM is already parsed here.
wire();
start();
