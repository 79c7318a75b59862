/**
 * "Guardrails": the checks of `karaxas-ops guardrails` with its default thresholds, computed in
 * the browser from the same API answers (metrics, the publishes of the drain window and their
 * drains) plus the chain verification, as with `--verify-chain`.
 */
import { api, listAll } from './api.js';
import { DEFAULT_DRAIN_WINDOW_HOURS, MAX_PUBLISHES_CHECKED, evaluateGuardrails, guardrailValues } from './contract.js';
import { errorBox, formatNumber, h, pageHeader, pill, replace, updatedText } from './dom.js';

export const createGuardrailsPage = () => {
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const refreshButton = h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh');
  const summary = h('div', { id: 'guardrail-summary' });
  const table = h('div', { class: 'table-wrap', id: 'guardrail-checks' });
  const root = h(
    'section',
    { class: 'page-section' },
    pageHeader(
      'Guardrails',
      `The checks of karaxas-ops guardrails --verify-chain with the default thresholds (drain window ${DEFAULT_DRAIN_WINDOW_HOURS} h). A value above its maximum breaches.`,
      [status, refreshButton],
    ),
    summary,
    table,
    h(
      'p',
      { class: 'muted small' },
      'Thresholds overridden for the CLI (flags or GUARDRAIL_* variables) do not apply here; the console always shows the defaults.',
    ),
  );

  const load = async () => {
    refreshButton.disabled = true;
    status.textContent = 'Loading…';
    try {
      const now = Date.now();
      const since = new Date(now - DEFAULT_DRAIN_WINDOW_HOURS * 3_600_000).toISOString();
      const [metrics, publishes, chain] = await Promise.all([
        api.metrics(),
        listAll((query) => api.adminAudit(query), { action: 'release.publish', since }, MAX_PUBLISHES_CHECKED),
        api.verifyChain(),
      ]);
      const drains = [];
      for (const publish of publishes.items) {
        if (publish.target === null) continue;
        const drain = await api.drain(publish.target).then(
          (response) => response.drain,
          (error) => {
            if (error?.status === 404) return null;
            throw error;
          },
        );
        if (drain !== null) drains.push(drain);
      }
      const checks = evaluateGuardrails(guardrailValues(metrics, drains, chain, now));
      const breached = checks.filter((check) => check.breached);
      replace(
        summary,
        h(
          'div',
          { class: `verdict ${breached.length === 0 ? 'verdict-ok' : 'verdict-broken'}`, dataset: { breached: String(breached.length) } },
          h('div', { class: 'verdict-mark', 'aria-hidden': 'true' }, breached.length === 0 ? '✓' : '!'),
          h(
            'div',
            {},
            h(
              'div',
              { class: 'verdict-title' },
              breached.length === 0 ? `All ${checks.length} guardrails within their thresholds` : `${breached.length} of ${checks.length} guardrails breached`,
            ),
            breached.length > 0 ? h('p', {}, breached.map((check) => check.flag).join(', ')) : null,
          ),
        ),
      );
      replace(
        table,
        h(
          'table',
          { class: 'table' },
          h('thead', {}, h('tr', {}, h('th', {}, 'status'), h('th', {}, 'threshold'), h('th', { class: 'num' }, 'value'), h('th', { class: 'num' }, 'max'), h('th', {}, 'what'))),
          h(
            'tbody',
            {},
            checks.map((check) =>
              h(
                'tr',
                { dataset: { guardrail: check.name, breached: String(check.breached) }, class: check.breached ? 'row-breached' : undefined },
                h('td', {}, check.breached ? pill('BREACHED', 'danger') : pill('ok', 'ok')),
                h('td', { class: 'mono' }, `--${check.flag}`),
                h('td', { class: 'num strong' }, formatNumber(check.value)),
                h('td', { class: 'num' }, formatNumber(check.threshold)),
                h('td', {}, check.description),
              ),
            ),
          ),
        ),
      );
      status.textContent = updatedText();
    } catch (error) {
      replace(summary, errorBox(error, 'Could not evaluate the guardrails'));
      replace(table);
      status.textContent = '';
    } finally {
      refreshButton.disabled = false;
    }
  };

  let loaded = false;
  return {
    id: 'guardrails',
    title: 'Guardrails',
    root,
    show: () => {
      if (loaded) return undefined;
      loaded = true;
      return load();
    },
  };
};
