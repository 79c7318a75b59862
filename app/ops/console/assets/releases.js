/**
 * "Releases & drains": the active release policy of every platform (`GET /release/policy`),
 * the drain counters of the metrics, and the most recent publishes with their drain status
 * (`release.publish` rows of the admin audit → `GET /ops/release/drains/:id`).
 */
import { api } from './api.js';
import { releasePlatforms } from './contract.js';
import { errorBox, formatTime, h, pageHeader, pill, replace, textOf, tile, updatedText } from './dom.js';

const RECENT_DRAINS = 20;

const yesNo = (value, tone = 'warning') => (value ? pill('yes', tone) : pill('no', 'neutral'));

const drainTone = { running: 'info', completed: 'ok', failed: 'danger' };

export const createReleasesPage = () => {
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const refreshButton = h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh');
  const policies = h('div', { class: 'table-wrap', id: 'release-policies' });
  const gateNotice = h('div');
  const tiles = h('div', { class: 'tiles' });
  const drains = h('div', { class: 'table-wrap', id: 'release-drains' });
  const root = h(
    'section',
    { class: 'page-section' },
    pageHeader('Releases & drains', 'The active release policy of each platform and the most recent publish drains.', [status, refreshButton]),
    h('h2', {}, 'Active policies'),
    gateNotice,
    policies,
    h('h2', {}, 'Drains'),
    tiles,
    drains,
  );

  const renderPolicies = (answers) => {
    const gated = answers.filter(({ answer }) => answer?.policy?.loginGate).map(({ platform }) => platform);
    replace(
      gateNotice,
      gated.length > 0
        ? h(
            'p',
            { class: 'alert alert-warning' },
            `Login gate on for ${gated.join(', ')}: outdated clients of these platforms cannot sign in, and neither can clients that send no X-Client-Platform.`,
          )
        : null,
    );
    replace(
      policies,
      h(
        'table',
        { class: 'table' },
        h(
          'thead',
          {},
          h('tr', {}, ['platform', 'policy', 'min supported', 'latest', 'force update', 'login gate'].map((label) => h('th', {}, label))),
        ),
        h(
          'tbody',
          {},
          answers.map(({ platform, answer, error }) => {
            if (error) return h('tr', { dataset: { platform } }, h('td', {}, platform), h('td', { colspan: 5 }, errorBox(error)));
            const policy = answer.policy;
            if (policy === null) {
              return h('tr', { dataset: { platform } }, h('td', { class: 'strong' }, platform), h('td', {}, pill('none', 'neutral')), h('td', { colspan: 4, class: 'muted' }, 'no active policy: every version may sign in'));
            }
            return h(
              'tr',
              { dataset: { platform } },
              h('td', { class: 'strong' }, platform),
              h('td', {}, pill('active', 'ok')),
              h('td', { class: 'mono' }, policy.minSupportedVersion),
              h('td', { class: 'mono' }, policy.latestVersion),
              h('td', {}, yesNo(policy.forceUpdate)),
              h('td', {}, yesNo(policy.loginGate, 'danger')),
            );
          }),
        ),
      ),
    );
  };

  const renderDrains = (metrics, rows) => {
    const running = metrics.drains.started - metrics.drains.completed - metrics.drains.failed;
    replace(
      tiles,
      tile('drains started', metrics.drains.started),
      tile('running', running, running > 0 ? 'info' : 'neutral'),
      tile('completed', metrics.drains.completed, 'neutral'),
      tile('failed', metrics.drains.failed, metrics.drains.failed > 0 ? 'danger' : 'neutral'),
    );
    if (rows.length === 0) {
      replace(drains, h('p', { class: 'empty' }, 'No release was published yet.'));
      return;
    }
    replace(
      drains,
      h(
        'table',
        { class: 'table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['requested (UTC)', 'platform', 'version', 'min supported', 'force', 'status', 'notified', 'closed', 'skipped', 'instances', 'by', 'finished / deadline (UTC)'].map(
              (label) => h('th', { class: /notified|closed|skipped/.test(label) ? 'num' : undefined }, label),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          rows.map(({ publish, drain, error }) => {
            if (drain === undefined) {
              return h(
                'tr',
                {},
                h('td', { class: 'nowrap' }, formatTime(publish.createdAt)),
                h('td', { colspan: 11 }, error ? errorBox(error, `drain ${textOf(publish.target)}`) : `drain ${textOf(publish.target)} not found`),
              );
            }
            const counts = drain.counts;
            return h(
              'tr',
              { dataset: { drainId: drain.id } },
              h('td', { class: 'nowrap', title: drain.id }, formatTime(drain.requestedAt)),
              h('td', { class: 'strong' }, drain.platform),
              h('td', { class: 'mono' }, drain.version),
              h('td', { class: 'mono' }, drain.minSupportedVersion),
              h('td', {}, yesNo(drain.forceUpdate)),
              h('td', {}, pill(drain.status, drainTone[drain.status] ?? 'neutral'), drain.failureReason ? h('div', { class: 'small muted' }, drain.failureReason) : null),
              h('td', { class: 'num' }, String(counts.notified)),
              h('td', { class: 'num' }, String(counts.closed)),
              h('td', { class: 'num' }, String(counts.skipped)),
              h('td', { class: 'nowrap' }, `${counts.instancesCompleted}/${counts.instances} done${counts.instancesFailed > 0 ? `, ${counts.instancesFailed} failed` : ''}`),
              h('td', { class: 'mono small' }, drain.requestedBy),
              h('td', { class: 'nowrap' }, drain.finishedAt ? formatTime(drain.finishedAt) : `≤ ${formatTime(drain.deadlineAt)}`),
            );
          }),
        ),
      ),
    );
  };

  const load = async () => {
    refreshButton.disabled = true;
    status.textContent = 'Loading…';
    try {
      const [answers, metrics, publishes] = await Promise.all([
        Promise.all(
          releasePlatforms.map((platform) =>
            api.releasePolicy(platform).then(
              (answer) => ({ platform, answer }),
              (error) => ({ platform, error }),
            ),
          ),
        ),
        api.metrics(),
        api.adminAudit({ action: 'release.publish', limit: RECENT_DRAINS }),
      ]);
      renderPolicies(answers);
      const rows = await Promise.all(
        publishes.items.map((publish) =>
          publish.target === null
            ? { publish }
            : api.drain(publish.target).then(
                (response) => ({ publish, drain: response.drain }),
                (error) => ({ publish, error: error?.status === 404 ? undefined : error }),
              ),
        ),
      );
      renderDrains(metrics, rows);
      status.textContent = updatedText();
    } catch (error) {
      replace(drains, errorBox(error, 'Could not load the releases'));
      status.textContent = '';
    } finally {
      refreshButton.disabled = false;
    }
  };

  let loaded = false;
  return {
    id: 'releases',
    title: 'Releases & drains',
    root,
    show: () => {
      if (loaded) return undefined;
      loaded = true;
      return load();
    },
  };
};
