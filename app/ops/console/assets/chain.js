/**
 * "Chain verification": `GET /ops/release/security-audit/verify` — whether every row of the
 * security-event trail still hashes onto the previous one.
 */
import { api } from './api.js';
import { errorBox, formatNumber, h, pageHeader, replace, textOf, updatedText } from './dom.js';

export const createChainPage = () => {
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const verifyButton = h('button', { type: 'button', class: 'button button-primary', onclick: () => void verify() }, 'Verify now');
  const result = h('div', { id: 'chain-result' });
  const root = h(
    'section',
    { class: 'page-section' },
    pageHeader(
      'Chain verification',
      'Recomputes the hash chain of the security-event trail (security_event_audit). A break means a row was altered or removed outside the archive routine.',
      [status, verifyButton],
    ),
    result,
  );

  const verify = async () => {
    verifyButton.disabled = true;
    status.textContent = 'Verifying…';
    const started = Date.now();
    try {
      const chain = await api.verifyChain();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      replace(
        result,
        h(
          'div',
          { class: `verdict ${chain.ok ? 'verdict-ok' : 'verdict-broken'}`, dataset: { ok: String(chain.ok) } },
          h('div', { class: 'verdict-mark', 'aria-hidden': 'true' }, chain.ok ? '✓' : '✗'),
          h(
            'div',
            {},
            h('div', { class: 'verdict-title' }, chain.ok ? 'Chain intact' : 'Chain broken'),
            h(
              'dl',
              { class: 'facts' },
              h('dt', {}, 'rows checked'),
              h('dd', {}, formatNumber(chain.checked)),
              h('dt', {}, 'first broken row'),
              h('dd', { class: 'mono' }, textOf(chain.firstBrokenId)),
              h('dt', {}, 'took'),
              h('dd', {}, `${seconds} s`),
            ),
            chain.ok
              ? null
              : h(
                  'p',
                  { class: 'verdict-advice' },
                  'Treat this as a security incident: preserve the database, compare the row against the archived exports and follow the runbook.',
                ),
          ),
        ),
      );
      status.textContent = updatedText();
    } catch (error) {
      replace(result, errorBox(error, 'Could not verify the chain'));
      status.textContent = '';
    } finally {
      verifyButton.disabled = false;
    }
  };

  let loaded = false;
  return {
    id: 'chain',
    title: 'Chain verification',
    root,
    show: () => {
      if (loaded) return undefined;
      loaded = true;
      return verify();
    },
  };
};
