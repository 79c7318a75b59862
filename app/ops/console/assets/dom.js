/* global document, Node */
/**
 * DOM helpers. The console never parses HTML: elements are created one by one and every value
 * becomes a text node or `textContent` (the CSP's `require-trusted-types-for 'script'` makes the
 * browser refuse any string assigned to innerHTML & co. anyway).
 */

/**
 * `h('td', {class: 'mono', title: id}, id)`: an element with attributes, listeners (`onclick`:
 * a function) and children (nodes, or anything else as text; null/undefined/false skipped).
 */
export const h = (tag, props = {}, ...children) => {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
      element.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      element.className = value;
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name === 'hidden' || name === 'disabled' || name === 'selected' || name === 'checked' || name === 'required') {
      element[name] = Boolean(value);
    } else if (name === 'value') {
      element.value = String(value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
};

/** Appends children: nodes as they are, anything else as a text node. */
export const append = (parent, children) => {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
};

/** Replaces the children of `parent`. */
export const replace = (parent, ...children) => {
  parent.replaceChildren();
  return append(parent, children);
};

/** `2026-11-29 05:12:03` (UTC) from an ISO timestamp; the input unchanged when it is not one. */
export const formatTime = (iso) => {
  if (typeof iso !== 'string') return '—';
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : new Date(time).toISOString().replace('T', ' ').slice(0, 19);
};

export const formatNumber = (value) => (typeof value === 'number' ? value.toLocaleString('en-US') : '—');

/** A value that came from the API, as display text ('—' for null/empty). */
export const textOf = (value) => (value === null || value === undefined || value === '' ? '—' : String(value));

/** A JSON object as one line of text; '—' for an empty object. */
export const jsonText = (value) => {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object' && Object.keys(value).length === 0) return '—';
  return JSON.stringify(value);
};

/** Severity of a security event type, for its colour. */
export const eventSeverity = (type) => {
  if (/reuse_detected|ops_auth_failed|account_locked|replay|bulk_revocation|password_reset_forced|origin_rejected/.test(type)) return 'danger';
  if (/failed|rejected|rate_limited|muted|grace_reuse|revoked|role_changed|mfa_disabled/.test(type)) return 'warning';
  return 'info';
};

/** A labelled status pill. */
export const pill = (text, tone = 'neutral') => h('span', { class: `pill pill-${tone}` }, text);

/** An error from the API (or anything thrown) as an alert box. */
export const errorBox = (error, context) => {
  const code = error && typeof error.code === 'string' ? error.code : 'error';
  const message = error && typeof error.message === 'string' ? error.message : String(error);
  const requestId = error && typeof error.requestId === 'string' ? error.requestId : null;
  const details = Array.isArray(error?.details) ? error.details : [];
  return h(
    'div',
    { class: 'alert alert-error', role: 'alert' },
    h('strong', {}, context ? `${context}: ` : ''),
    `${message} (${code}${error?.status ? `, HTTP ${error.status}` : ''})`,
    details.length > 0 ? h('ul', {}, details.map((detail) => h('li', {}, `${detail.path}: ${detail.message}`))) : null,
    requestId ? h('div', { class: 'muted small' }, 'request id ', h('code', {}, requestId)) : null,
  );
};

/** A "loading…" placeholder. */
export const loading = (text = 'Loading…') => h('p', { class: 'loading muted' }, text);

/** The title row of a page: heading, one-line description, actions on the right. */
export const pageHeader = (title, description, actions = []) =>
  h(
    'div',
    { class: 'page-header' },
    h('div', {}, h('h1', {}, title), h('p', { class: 'muted' }, description)),
    h('div', { class: 'page-actions' }, actions),
  );

/** "Updated 2026-11-29 05:12:03 UTC". */
export const updatedText = () => `Updated ${formatTime(new Date().toISOString())} UTC`;

/** A number tile. */
export const tile = (label, value, tone = 'neutral', hint = undefined) =>
  h('div', { class: `tile tile-${tone}` }, h('div', { class: 'tile-value' }, formatNumber(value)), h('div', { class: 'tile-label' }, label), hint ? h('div', { class: 'tile-hint' }, hint) : null);
