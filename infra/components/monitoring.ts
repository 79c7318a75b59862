/**
 * Monitoring: the seed runbook's "monitor auth failure rates", "admin audit log endpoint
 * reachable and monitored" and the guardrail thresholds as Cloud Monitoring resources.
 *
 * - Log-based metrics from the app's structured logs: one counter of security events labelled
 *   by `event_type` (the app logs `{securityEvent: <type>, …}` once per recorded event, after its
 *   transaction committed — never for a rollback), one of publish-drain failures (the release
 *   service's "publish drain failed…" lines, likewise after the deciding commit), and one of
 *   failed archive triggers (Cloud Scheduler's error log of the archive schedule).
 * - Uptime checks: GET /readyz and GET /ops/release/admin-audit with the ops token (a secret
 *   input, masked by the API).
 * - One alert policy per guardrail, thresholds from stack config, routed to the stack's
 *   notification channels (existing ones by name, plus one email channel per address).
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';
import { ADMIN_AUDIT_PATH } from './armor-rules.js';

/** More than `count` within `windowSeconds` fires. */
export interface Threshold {
  count: number;
  windowSeconds: number;
}

/** The alert policies every stack has, by the `alert` user label they carry. */
export const ALERT_KEYS = [
  'auth-failures',
  'lockouts',
  'rate-limit-pressure',
  'refresh-token-reuse',
  'drain-failures',
  'archive-failures',
  'armor-denies',
  'uptime-readyz',
  'uptime-admin-audit',
] as const;
export type AlertKey = (typeof ALERT_KEYS)[number];

/** Security event types (contract §8) each event-based alert counts. */
export const ALERT_EVENT_TYPES = {
  'auth-failures': ['login_failed', 'mfa_failed'],
  lockouts: ['account_locked'],
  'rate-limit-pressure': ['rate_limited', 'chat_rate_limited'],
  'refresh-token-reuse': ['refresh_token_reuse_detected'],
} as const satisfies Partial<Record<AlertKey, readonly string[]>>;

/** Log lines of the release service that mean a publish drain failed (app/release/service.ts). */
export const DRAIN_FAILURE_PATTERN = '^(publish drain failed|publish drain could not start|could not record the end of a publish drain)';

export interface MonitoringArgs extends BaseArgs {
  /** Cloud Run service whose logs carry the security events. */
  serviceName: pulumi.Input<string>;
  /** The archive job and its Cloud Scheduler trigger (`name` of each). */
  archiveJobName: pulumi.Input<string>;
  archiveTriggerName: pulumi.Input<string>;
  /** Cloud Armor policies whose denials count as "deny spikes". */
  armorPolicyNames: pulumi.Input<string>[];
  /** Host the uptime checks call (the first domain). */
  host: string;
  /** The ops API token (a Pulumi secret) for the admin-audit uptime check. */
  opsToken: pulumi.Input<string>;
  /** Create the admin-audit uptime check (off when IAP guards /ops). */
  adminAuditCheck: boolean;
  uptimePeriodSeconds: number;
  /** Checker regions; empty = all. */
  uptimeRegions: string[];
  thresholds: {
    authFailures: Threshold;
    lockouts: Threshold;
    rateLimited: Threshold;
    refreshTokenReuse: Threshold;
    drainFailures: Threshold;
    archiveFailures: Threshold;
    armorDenies: Threshold;
  };
  /** Existing channels, `projects/<p>/notificationChannels/<id>`. */
  notificationChannels: string[];
  /** An email channel is created for each. */
  emails: string[];
}

type Condition = gcp.types.input.monitoring.AlertPolicyCondition;

/** A "more than `count` in the window" condition on a DELTA counter. */
function countCondition(displayName: string, filter: pulumi.Input<string>, t: Threshold): Condition {
  return {
    displayName,
    conditionThreshold: {
      filter,
      aggregations: [
        { alignmentPeriod: `${t.windowSeconds}s`, perSeriesAligner: 'ALIGN_SUM', crossSeriesReducer: 'REDUCE_SUM', groupByFields: [] },
      ],
      comparison: 'COMPARISON_GT',
      thresholdValue: t.count,
      duration: '0s',
      trigger: { count: 1 },
    },
  };
}

const quoted = (values: readonly string[]) => values.map((v) => `"${v}"`).join(', ');

export class Monitoring extends pulumi.ComponentResource {
  public readonly securityEventsMetric: gcp.logging.Metric;
  public readonly drainFailuresMetric: gcp.logging.Metric;
  public readonly archiveTriggerFailuresMetric: gcp.logging.Metric;
  public readonly readyzCheck: gcp.monitoring.UptimeCheckConfig;
  public readonly adminAuditCheck?: gcp.monitoring.UptimeCheckConfig;
  public readonly alertPolicies: Partial<Record<AlertKey, gcp.monitoring.AlertPolicy>> = {};
  /** Every channel the alerts notify. */
  public readonly channels: pulumi.Output<string>[];

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Monitoring`, name, {}, opts);
    const p = args.prefix;
    const labels = { ...args.labels };
    const child = { parent: this };

    const emailChannels = args.emails.map(
      (email, i) =>
        new gcp.monitoring.NotificationChannel(
          `${p}-alerts-email-${i}`,
          { project: args.project, type: 'email', displayName: `${p} alerts: ${email}`, labels: { email_address: email }, userLabels: labels },
          child,
        ),
    );
    this.channels = [...args.notificationChannels.map((c) => pulumi.output(c)), ...emailChannels.map((c) => c.name)];

    // ---- log-based metrics
    const runLogs = pulumi.interpolate`resource.type="cloud_run_revision" AND resource.labels.service_name="${args.serviceName}"`;
    this.securityEventsMetric = new gcp.logging.Metric(
      `${p}-security-events`,
      {
        project: args.project,
        name: `${p}-security-events`,
        description: 'Security events recorded by the API (one log line per security_event_audit row), by event_type',
        filter: pulumi.interpolate`${runLogs} AND jsonPayload.securityEvent:*`,
        labelExtractors: { event_type: 'EXTRACT(jsonPayload.securityEvent)' },
        metricDescriptor: {
          metricKind: 'DELTA',
          valueType: 'INT64',
          unit: '1',
          displayName: `${p} security events`,
          labels: [{ key: 'event_type', valueType: 'STRING', description: 'security_event_audit.event_type (contract §8)' }],
        },
      },
      child,
    );
    this.drainFailuresMetric = new gcp.logging.Metric(
      `${p}-drain-failures`,
      {
        project: args.project,
        name: `${p}-drain-failures`,
        description: 'Publish drains that failed or could not start / finish (release service log lines)',
        filter: pulumi.interpolate`${runLogs} AND jsonPayload.message=~"${DRAIN_FAILURE_PATTERN}"`,
        metricDescriptor: { metricKind: 'DELTA', valueType: 'INT64', unit: '1', displayName: `${p} drain failures` },
      },
      child,
    );
    this.archiveTriggerFailuresMetric = new gcp.logging.Metric(
      `${p}-archive-trigger-failures`,
      {
        project: args.project,
        name: `${p}-archive-trigger-failures`,
        description: 'Failed attempts of Cloud Scheduler to start the monthly archive job',
        filter: pulumi.interpolate`resource.type="cloud_scheduler_job" AND resource.labels.job_id="${args.archiveTriggerName}" AND severity>=ERROR`,
        metricDescriptor: { metricKind: 'DELTA', valueType: 'INT64', unit: '1', displayName: `${p} archive trigger failures` },
      },
      child,
    );
    const userMetric = (m: gcp.logging.Metric) => pulumi.interpolate`logging.googleapis.com/user/${m.name}`;

    // ---- uptime checks
    const uptimeBase = {
      project: args.project,
      timeout: '10s',
      period: `${args.uptimePeriodSeconds}s`,
      checkerType: 'STATIC_IP_CHECKERS',
      ...(args.uptimeRegions.length ? { selectedRegions: args.uptimeRegions } : {}),
      monitoredResource: { type: 'uptime_url', labels: { project_id: args.project, host: args.host } },
      userLabels: labels,
    };
    const https = { port: 443, useSsl: true, validateSsl: true, requestMethod: 'GET', acceptedResponseStatusCodes: [{ statusClass: 'STATUS_CLASS_2XX' }] };
    this.readyzCheck = new gcp.monitoring.UptimeCheckConfig(
      `${p}-uptime-readyz`,
      {
        ...uptimeBase,
        displayName: `${p} GET /readyz`,
        httpCheck: { ...https, path: '/readyz' },
        contentMatchers: [{ content: '"ready"', matcher: 'CONTAINS_STRING' }],
      },
      child,
    );
    if (args.adminAuditCheck) {
      this.adminAuditCheck = new gcp.monitoring.UptimeCheckConfig(
        `${p}-uptime-admin-audit`,
        {
          ...uptimeBase,
          displayName: `${p} GET ${ADMIN_AUDIT_PATH} (ops token)`,
          httpCheck: {
            ...https,
            path: ADMIN_AUDIT_PATH,
            // The token is a secret input; maskHeaders hides it in the API and the console.
            headers: { Authorization: pulumi.secret(pulumi.interpolate`Bearer ${args.opsToken}`) },
            maskHeaders: true,
          },
          contentMatchers: [{ content: '"items"', matcher: 'CONTAINS_STRING' }],
        },
        child,
      );
    }

    // ---- alert policies
    const t = args.thresholds;
    const eventFilter = (types: readonly string[]) =>
      pulumi.interpolate`resource.type="cloud_run_revision" AND metric.type="${userMetric(this.securityEventsMetric)}" AND metric.label.event_type=one_of(${quoted(types)})`;
    const uptimeCondition = (check: gcp.monitoring.UptimeCheckConfig, what: string): Condition => ({
      displayName: `${what} failing from more than one region`,
      conditionThreshold: {
        filter: pulumi.interpolate`resource.type="uptime_url" AND metric.type="monitoring.googleapis.com/uptime_check/check_passed" AND metric.label.check_id="${check.uptimeCheckId}"`,
        aggregations: [
          {
            alignmentPeriod: '1200s',
            perSeriesAligner: 'ALIGN_NEXT_OLDER',
            crossSeriesReducer: 'REDUCE_COUNT_FALSE',
            groupByFields: ['resource.label.*'],
          },
        ],
        comparison: 'COMPARISON_GT',
        thresholdValue: 1,
        duration: '60s',
        trigger: { count: 1 },
      },
    });

    const specs: Array<{ key: AlertKey; title: string; severity: 'CRITICAL' | 'ERROR' | 'WARNING'; runbook: string; conditions: Condition[] }> = [
      {
        key: 'auth-failures',
        title: 'auth failure rate',
        severity: 'WARNING',
        runbook: 'Account compromise wave: tighten the AUTH_* tunables, revoke suspected sessions, watch /ops/release/metrics.',
        conditions: [countCondition(`login/MFA failures > ${t.authFailures.count} in ${t.authFailures.windowSeconds}s`, eventFilter(ALERT_EVENT_TYPES['auth-failures']), t.authFailures)],
      },
      {
        key: 'lockouts',
        title: 'account lockouts',
        severity: 'WARNING',
        runbook: 'Account compromise wave (credential stuffing): see docs/runbook.md.',
        conditions: [countCondition(`lockouts > ${t.lockouts.count} in ${t.lockouts.windowSeconds}s`, eventFilter(ALERT_EVENT_TYPES.lockouts), t.lockouts)],
      },
      {
        key: 'rate-limit-pressure',
        title: 'rate-limit pressure',
        severity: 'WARNING',
        runbook: 'Abuse/spam burst: tighten CHAT_* tunables or armor.pathThrottles, deny-list sources (armor.denySourceRanges).',
        conditions: [countCondition(`rate-limited requests > ${t.rateLimited.count} in ${t.rateLimited.windowSeconds}s`, eventFilter(ALERT_EVENT_TYPES['rate-limit-pressure']), t.rateLimited)],
      },
      {
        key: 'refresh-token-reuse',
        title: 'refresh_token_reuse_detected spike',
        severity: 'ERROR',
        runbook: 'Refresh token replay: inspect GET /ops/release/security-audit?event_type=refresh_token_reuse_detected, confirm session_bulk_revocation.',
        conditions: [
          countCondition(`refresh token reuse > ${t.refreshTokenReuse.count} in ${t.refreshTokenReuse.windowSeconds}s`, eventFilter(ALERT_EVENT_TYPES['refresh-token-reuse']), t.refreshTokenReuse),
        ],
      },
      {
        key: 'drain-failures',
        title: 'publish drain failures',
        severity: 'ERROR',
        runbook: 'A publish drain failed: GET /ops/release/drains/<id>, check the instances named in the failure.',
        conditions: [
          countCondition(
            `drain failures > ${t.drainFailures.count} in ${t.drainFailures.windowSeconds}s`,
            pulumi.interpolate`resource.type="cloud_run_revision" AND metric.type="${userMetric(this.drainFailuresMetric)}"`,
            t.drainFailures,
          ),
        ],
      },
      {
        key: 'archive-failures',
        title: 'security-audit archive failed',
        severity: 'ERROR',
        runbook: 'The monthly archive failed: gcloud run jobs executions list --job <job>; nothing is deleted unless the export verified. Re-run the job after fixing.',
        conditions: [
          countCondition(
            'archive job execution failed',
            pulumi.interpolate`resource.type="cloud_run_job" AND resource.label.job_name="${args.archiveJobName}" AND metric.type="run.googleapis.com/job/completed_execution_count" AND metric.label.result="failed"`,
            t.archiveFailures,
          ),
          countCondition(
            'archive job could not be started',
            pulumi.interpolate`resource.type="cloud_scheduler_job" AND metric.type="${userMetric(this.archiveTriggerFailuresMetric)}"`,
            t.archiveFailures,
          ),
        ],
      },
      {
        key: 'armor-denies',
        title: 'Cloud Armor deny spike',
        severity: 'WARNING',
        runbook: 'Requests denied at the edge spiked: read the LB logs (enforcedSecurityPolicy) for the rule and sources.',
        conditions: [
          countCondition(
            `denied at the edge > ${t.armorDenies.count} in ${t.armorDenies.windowSeconds}s`,
            pulumi
              .all(args.armorPolicyNames)
              .apply(
                (names) =>
                  `resource.type="network_security_policy" AND metric.type="networksecurity.googleapis.com/https/request_count" AND metric.label.blocked="true" AND resource.label.policy_name=one_of(${quoted(names)})`,
              ),
            t.armorDenies,
          ),
        ],
      },
      {
        key: 'uptime-readyz',
        title: 'GET /readyz failing',
        severity: 'CRITICAL',
        runbook: 'The API is not ready (database unreachable or no healthy revision).',
        conditions: [uptimeCondition(this.readyzCheck, 'GET /readyz')],
      },
    ];
    if (this.adminAuditCheck) {
      specs.push({
        key: 'uptime-admin-audit',
        title: `GET ${ADMIN_AUDIT_PATH} failing`,
        severity: 'CRITICAL',
        runbook: 'The admin audit endpoint is unreachable or refuses the ops token (rotation not rolled out?).',
        conditions: [uptimeCondition(this.adminAuditCheck, `GET ${ADMIN_AUDIT_PATH}`)],
      });
    }

    for (const spec of specs) {
      this.alertPolicies[spec.key] = new gcp.monitoring.AlertPolicy(
        `${p}-alert-${spec.key}`,
        {
          project: args.project,
          displayName: `${p}: ${spec.title}`,
          combiner: 'OR',
          enabled: true,
          severity: spec.severity,
          conditions: spec.conditions,
          notificationChannels: this.channels,
          alertStrategy: { autoClose: '1800s' },
          documentation: { mimeType: 'text/markdown', content: `${spec.runbook}\n\nPlaybooks: docs/runbook.md. Thresholds: stack config monitoring.alerts.` },
          userLabels: { ...labels, alert: spec.key },
        },
        child,
      );
    }

    this.registerOutputs({ alertPolicies: Object.keys(this.alertPolicies) });
  }
}
