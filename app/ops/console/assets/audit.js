/**
 * The audit tables: `GET /ops/release/security-audit` (event_type, user_id, since, until) and
 * `GET /ops/release/admin-audit` (action, actor, since, until), newest first, keyset pages
 * (`nextCursor`). Every value of a row is rendered as text.
 */
import { api } from './api.js';
import { adminActions } from './contract.js';
import { errorBox, eventSeverity, formatNumber, formatTime, h, jsonText, pageHeader, replace, textOf, updatedText } from './dom.js';

const PAGE_SIZES = [25, 50, 100, 200, 500];
const DEFAULT_PAGE_SIZE = 50;

/** `2026-11-29T05:00` (a datetime-local value, read as UTC) → ISO, or undefined when empty. */
const utcInputToIso = (value) => {
  if (value === '') return undefined;
  const time = Date.parse(`${value}Z`);
  return Number.isNaN(time) ? value : new Date(time).toISOString();
};

/**
 * One audit page. `filters`: [{name, label, kind: 'select'|'text'|'datetime', options?, list?,
 * placeholder?}]; `columns`: [{label, class?, cell(item, filterBy)}], where `filterBy(name,
 * value, content)` makes a button that filters the table by that value.
 */
const createAuditPage = ({ id, title, description, noun, fetchPage, filters, columns }) => {
  const fields = new Map();
  const controls = filters.map((filter) => {
    let input;
    if (filter.kind === 'select') {
      input = h(
        'select',
        { name: filter.name, id: `${id}-${filter.name}` },
        h('option', { value: '' }, 'any'),
        filter.options.map((option) => h('option', { value: option }, option)),
      );
    } else {
      input = h('input', {
        name: filter.name,
        id: `${id}-${filter.name}`,
        type: filter.kind === 'datetime' ? 'datetime-local' : 'text',
        step: filter.kind === 'datetime' ? '1' : undefined,
        placeholder: filter.placeholder,
        list: filter.list ? `${id}-${filter.name}-list` : undefined,
        autocomplete: 'off',
        spellcheck: 'false',
      });
    }
    fields.set(filter.name, { input, filter });
    return h(
      'div',
      { class: 'field' },
      h('label', { for: `${id}-${filter.name}` }, filter.label),
      input,
      filter.list ? h('datalist', { id: `${id}-${filter.name}-list` }, filter.list.map((value) => h('option', { value }))) : null,
    );
  });
  const limit = h(
    'select',
    { name: 'limit', id: `${id}-limit` },
    PAGE_SIZES.map((size) => h('option', { value: size, selected: size === DEFAULT_PAGE_SIZE }, String(size))),
  );
  const applyButton = h('button', { type: 'submit', class: 'button button-primary' }, 'Apply');
  const resetButton = h('button', { type: 'button', class: 'button', onclick: () => resetFilters() }, 'Clear');
  const form = h(
    'form',
    { class: 'filters', id: `${id}-filters`, onsubmit: (event) => {
        event.preventDefault();
        void applyFilters();
      },
    },
    controls,
    h('div', { class: 'field' }, h('label', { for: `${id}-limit` }, 'per page'), limit),
    h('div', { class: 'field field-actions' }, applyButton, resetButton),
  );

  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const refreshButton = h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh');
  const newerButton = h('button', { type: 'button', class: 'button', dataset: { pager: 'newer' }, onclick: () => void goNewer() }, '← Newer');
  const olderButton = h('button', { type: 'button', class: 'button', dataset: { pager: 'older' }, onclick: () => void goOlder() }, 'Older →');
  const pageInfo = h('span', { class: 'pager-info', id: `${id}-page-info` });
  const results = h('div', { class: 'table-wrap', id: `${id}-results` });
  const root = h(
    'section',
    { class: 'page-section' },
    pageHeader(title, description, [status, refreshButton]),
    form,
    h('div', { class: 'pager' }, newerButton, pageInfo, olderButton),
    results,
  );

  // Keyset pagination: the cursor of every page visited, so "newer" goes back exactly.
  let query = {};
  let cursors = [undefined];
  let index = 0;
  let nextCursor = null;
  let busy = false;

  const readFilters = () => {
    const next = {};
    for (const [name, { input, filter }] of fields) {
      const value = input.value.trim();
      if (value === '') continue;
      next[name] = filter.kind === 'datetime' ? utcInputToIso(value) : value;
    }
    return next;
  };

  const filterBy = (name, value, content) =>
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        title: `Show only ${name} = ${value}`,
        onclick: () => {
          const field = fields.get(name);
          if (field === undefined) return;
          field.input.value = value;
          applyFilters();
        },
      },
      content ?? value,
    );

  const renderTable = (page) => {
    if (page.items.length === 0) {
      replace(results, h('p', { class: 'empty' }, index === 0 ? `No ${noun} match these filters.` : `No more ${noun}.`));
      return;
    }
    replace(
      results,
      h(
        'table',
        { class: 'table', id: `${id}-table` },
        h('thead', {}, h('tr', {}, columns.map((column) => h('th', { class: column.class }, column.label)))),
        h(
          'tbody',
          {},
          page.items.map((item) =>
            h('tr', { dataset: { id: item.id } }, columns.map((column) => h('td', { class: column.class }, column.cell(item, filterBy)))),
          ),
        ),
      ),
    );
  };

  const updatePager = (count) => {
    newerButton.disabled = busy || index === 0;
    olderButton.disabled = busy || nextCursor === null;
    const applied = Object.entries(query)
      .filter(([name]) => name !== 'limit')
      .map(([name, value]) => `${name}=${value}`);
    pageInfo.textContent = `Page ${index + 1} · ${formatNumber(count)} ${noun}${applied.length > 0 ? ` · ${applied.join(', ')}` : ''}`;
  };

  const load = async () => {
    busy = true;
    results.dataset.state = 'loading';
    updatePager(0);
    status.textContent = 'Loading…';
    refreshButton.disabled = true;
    applyButton.disabled = true;
    try {
      const page = await fetchPage({ ...query, cursor: cursors[index] });
      nextCursor = page.nextCursor;
      busy = false;
      renderTable(page);
      updatePager(page.items.length);
      results.dataset.state = 'ready';
      status.textContent = updatedText();
    } catch (error) {
      busy = false;
      nextCursor = null;
      replace(results, errorBox(error, `Could not load the ${noun}`));
      updatePager(0);
      results.dataset.state = 'error';
      status.textContent = '';
    } finally {
      refreshButton.disabled = false;
      applyButton.disabled = false;
    }
  };

  const applyFilters = () => {
    query = { ...readFilters(), limit: Number(limit.value) };
    cursors = [undefined];
    index = 0;
    return load();
  };
  const resetFilters = () => {
    for (const { input } of fields.values()) input.value = '';
    return applyFilters();
  };
  const goOlder = () => {
    if (busy || nextCursor === null) return undefined;
    cursors = [...cursors.slice(0, index + 1), nextCursor];
    index += 1;
    return load();
  };
  const goNewer = () => {
    if (busy || index === 0) return undefined;
    index -= 1;
    return load();
  };

  let loaded = false;
  return {
    id,
    title,
    root,
    show: () => {
      if (loaded) return undefined;
      loaded = true;
      return applyFilters();
    },
  };
};

const mono = (value) => h('span', { class: 'mono' }, textOf(value));
const timeCell = (item) => h('time', { datetime: item.createdAt, title: item.createdAt }, formatTime(item.createdAt));
const detailsCell = (item) => h('code', { class: 'details' }, jsonText(item.details));

/** @param {string[]} eventTypes every event type the server knows (the keys of the metrics). */
export const createSecurityAuditPage = (eventTypes) =>
  createAuditPage({
    id: 'security-audit',
    title: 'Security audit',
    description: 'The tamper-evident security-event trail, newest first. Times are UTC.',
    noun: 'events',
    fetchPage: (query) => api.securityAudit(query),
    filters: [
      { name: 'event_type', label: 'event type', kind: 'select', options: eventTypes },
      { name: 'user_id', label: 'user id', kind: 'text', placeholder: 'UUID' },
      { name: 'since', label: 'since (UTC)', kind: 'datetime' },
      { name: 'until', label: 'until (UTC)', kind: 'datetime' },
    ],
    columns: [
      { label: 'time (UTC)', class: 'nowrap', cell: timeCell },
      {
        label: 'event',
        class: 'col-event',
        cell: (item, filterBy) => filterBy('event_type', item.eventType, h('span', { class: `badge badge-${eventSeverity(item.eventType)}` }, item.eventType)),
      },
      { label: 'user', class: 'col-id', cell: (item, filterBy) => (item.userId ? filterBy('user_id', item.userId, mono(item.userId)) : mono(null)) },
      { label: 'ip', class: 'nowrap', cell: (item) => mono(item.ip) },
      { label: 'user agent', class: 'col-ua', cell: (item) => h('span', { class: 'ua' }, textOf(item.userAgent)) },
      { label: 'details', class: 'col-details', cell: detailsCell },
      {
        label: 'request / session',
        class: 'col-context',
        cell: (item) => [h('div', { class: 'mono small', title: 'request id' }, textOf(item.requestId)), h('div', { class: 'mono small muted', title: 'session id' }, textOf(item.sessionId))],
      },
    ],
  });

export const createAdminAuditPage = () =>
  createAuditPage({
    id: 'admin-audit',
    title: 'Admin audit',
    description: 'Every mutating ops call (admin_action_audit), newest first. Times are UTC.',
    noun: 'actions',
    fetchPage: (query) => api.adminAudit(query),
    filters: [
      { name: 'action', label: 'action', kind: 'text', placeholder: 'e.g. release.publish', list: adminActions },
      { name: 'actor', label: 'actor', kind: 'text', placeholder: 'ops-token or admin user id' },
      { name: 'since', label: 'since (UTC)', kind: 'datetime' },
      { name: 'until', label: 'until (UTC)', kind: 'datetime' },
    ],
    columns: [
      { label: 'time (UTC)', class: 'nowrap', cell: timeCell },
      { label: 'actor', class: 'col-id', cell: (item, filterBy) => filterBy('actor', item.actor, mono(item.actor)) },
      { label: 'action', class: 'nowrap', cell: (item, filterBy) => filterBy('action', item.action, h('span', { class: 'badge badge-neutral' }, item.action)) },
      { label: 'target', class: 'col-id', cell: (item) => mono(item.target) },
      { label: 'ip', class: 'nowrap', cell: (item) => mono(item.ip) },
      { label: 'details', class: 'col-details', cell: detailsCell },
      { label: 'request', class: 'col-context', cell: (item) => h('div', { class: 'mono small' }, textOf(item.requestId)) },
    ],
  });
