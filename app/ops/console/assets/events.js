/**
 * "Security events": one Chart.js bar chart per event type that occurred in the last 24 hours,
 * events bucketed by UTC hour in the browser from `GET /ops/release/security-audit`, plus the
 * exact counters of `GET /ops/release/metrics`.
 */
import { api, listAll } from './api.js';
import { bucketByHour } from './contract.js';
import { errorBox, eventSeverity, formatNumber, formatTime, h, pageHeader, replace, tile, updatedText } from './dom.js';

const HOUR = 3_600_000;
const HOURS = 24;
/** Events read per refresh at most (20 pages of 500); the counters stay exact beyond it. */
const MAX_EVENTS = 10_000;

const colours = { info: '#2563eb', warning: '#d97706', danger: '#dc2626' };

export const createEventsPage = () => {
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const refreshButton = h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh');
  const tiles = h('div', { class: 'tiles' });
  const notice = h('div');
  const grid = h('div', { class: 'chart-grid', id: 'event-charts' });
  const counters = h('div', { class: 'table-wrap table-wrap-fit' });
  const silentNote = h('p', { class: 'muted small' });
  const root = h(
    'section',
    { class: 'page-section' },
    pageHeader('Security events', `Events per hour over the last ${HOURS} hours (UTC), one chart per event type that occurred.`, [
      status,
      refreshButton,
    ]),
    tiles,
    notice,
    h('h2', {}, 'Per event type'),
    grid,
    h('h2', {}, 'Counters'),
    counters,
    silentNote,
  );

  let charts = [];
  const destroyCharts = () => {
    for (const chart of charts) chart.destroy();
    charts = [];
  };

  const renderTiles = (metrics) => {
    const last1h = (type) => metrics.securityEvents[type]?.last1h ?? 0;
    const total24h = Object.values(metrics.securityEvents).reduce((sum, counts) => sum + counts.last24h, 0);
    replace(
      tiles,
      tile('events, last 24 h', total24h),
      tile('failed logins, 1 h', metrics.auth.loginFailures1h, metrics.auth.loginFailures1h > 0 ? 'warning' : 'neutral'),
      tile('lockouts, 1 h', metrics.auth.lockouts1h, metrics.auth.lockouts1h > 0 ? 'warning' : 'neutral'),
      tile('rate-limited, 1 h', metrics.auth.rateLimited1h, metrics.auth.rateLimited1h > 0 ? 'warning' : 'neutral'),
      tile('refresh reuse, 1 h', last1h('refresh_token_reuse_detected'), last1h('refresh_token_reuse_detected') > 0 ? 'danger' : 'neutral'),
      tile('ops auth failures, 1 h', last1h('ops_auth_failed'), last1h('ops_auth_failed') > 0 ? 'danger' : 'neutral'),
      tile('active sessions', metrics.sessions.active),
    );
  };

  const renderCharts = (events, now) => {
    destroyCharts();
    const { starts, counts } = bucketByHour(events.items, (item) => item.eventType, now, HOURS);
    const series = [...counts.entries()]
      .map(([type, data]) => ({ type, data, total: data.reduce((sum, n) => sum + n, 0) }))
      .sort((a, b) => b.total - a.total || (a.type < b.type ? -1 : 1));
    const Chart = globalThis.Chart;
    if (Chart === undefined) {
      replace(grid, errorBox({ code: 'chart_library_missing', message: 'Chart.js did not load' }, 'Charts unavailable'));
      return;
    }
    if (series.length === 0) {
      replace(grid, h('p', { class: 'empty' }, `No security events in the last ${HOURS} hours.`));
      return;
    }
    const labels = starts.map((start) => new Date(start).toISOString().slice(11, 16));
    const cards = series.map(({ type, data, total }) => {
      const severity = eventSeverity(type);
      const canvas = h('canvas', { role: 'img', 'aria-label': `${type}: ${total} events in the last ${HOURS} hours`, dataset: { eventType: type } });
      const card = h(
        'article',
        { class: 'chart-card', dataset: { eventType: type } },
        h('header', { class: 'chart-card-header' }, h('span', { class: `badge badge-${severity}` }, type), h('span', { class: 'chart-total' }, `${formatNumber(total)} in 24 h`)),
        h('div', { class: 'chart-box' }, canvas),
      );
      return { card, canvas, type, data, severity };
    });
    replace(grid, cards.map(({ card }) => card));
    for (const { canvas, type, data, severity } of cards) {
      charts.push(
        new Chart(canvas, {
          type: 'bar',
          data: { labels, datasets: [{ label: type, data, backgroundColor: colours[severity], borderRadius: 2, maxBarThickness: 18 }] },
          options: {
            animation: false,
            responsive: true,
            maintainAspectRatio: false,
            plugins: {
              legend: { display: false },
              tooltip: {
                callbacks: {
                  title: (items) => {
                    const start = starts[items[0]?.dataIndex ?? 0];
                    return `${formatTime(new Date(start).toISOString()).slice(0, 16)}–${new Date(start + HOUR).toISOString().slice(11, 16)} UTC`;
                  },
                },
              },
            },
            scales: {
              x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8, color: '#6b7280', font: { size: 10 } } },
              y: { beginAtZero: true, ticks: { precision: 0, maxTicksLimit: 4, color: '#6b7280', font: { size: 10 } }, grid: { color: '#eef0f3' } },
            },
          },
        }),
      );
    }
  };

  const renderCounters = (metrics) => {
    const rows = Object.entries(metrics.securityEvents)
      .filter(([, c]) => c.total > 0)
      .sort(([a, x], [b, y]) => y.last24h - x.last24h || y.total - x.total || (a < b ? -1 : 1));
    const silent = Object.entries(metrics.securityEvents)
      .filter(([, c]) => c.total === 0)
      .map(([type]) => type)
      .sort();
    replace(
      counters,
      h(
        'table',
        { class: 'table table-compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 'event type'), h('th', { class: 'num' }, 'last hour'), h('th', { class: 'num' }, 'last 24 h'), h('th', { class: 'num' }, 'total'))),
        h(
          'tbody',
          {},
          rows.map(([type, c]) =>
            h(
              'tr',
              {},
              h('td', {}, h('span', { class: `badge badge-${eventSeverity(type)}` }, type)),
              h('td', { class: 'num' }, formatNumber(c.last1h)),
              h('td', { class: 'num' }, formatNumber(c.last24h)),
              h('td', { class: 'num' }, formatNumber(c.total)),
            ),
          ),
        ),
      ),
    );
    silentNote.textContent = silent.length > 0 ? `No events ever: ${silent.join(', ')}.` : '';
  };

  const load = async () => {
    refreshButton.disabled = true;
    status.textContent = 'Loading…';
    try {
      const now = Date.now();
      const since = new Date(Math.floor(now / HOUR) * HOUR - (HOURS - 1) * HOUR).toISOString();
      const [metrics, events] = await Promise.all([api.metrics(), listAll(api.securityAudit, { since }, MAX_EVENTS)]);
      replace(
        notice,
        events.truncated
          ? h('p', { class: 'alert alert-info' }, `The charts show the newest ${formatNumber(MAX_EVENTS)} events of the window; the counters below are exact.`)
          : null,
      );
      renderTiles(metrics);
      renderCharts(events, now);
      renderCounters(metrics);
      status.textContent = updatedText();
    } catch (error) {
      replace(notice, errorBox(error, 'Could not load the security events'));
      status.textContent = '';
    } finally {
      refreshButton.disabled = false;
    }
  };

  let loaded = false;
  return {
    id: 'events',
    title: 'Security events',
    root,
    show: () => {
      if (loaded) return undefined;
      loaded = true;
      return load();
    },
    destroy: destroyCharts,
  };
};
