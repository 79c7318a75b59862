#!/usr/bin/env bash
# Ops-metrics guardrail probe (contract §10; seed runbook "Optional automated guardrail probe").
#
#   scripts/check_ops_metrics_guardrails.sh [--url <url> | <url>] [karaxas-ops guardrails flags…]
#
# A thin wrapper around `karaxas-ops guardrails` for CI (deploy.yml runs it after each deploy) and
# for cron/uptime probes:
#   - the URL comes from --url, a first positional argument, or $KARAXAS_URL;
#   - the ops token from $OPS_API_TOKEN (or --token-file <path>) — never from a flag value;
#   - thresholds from the environment (GUARDRAIL_MAX_DRAIN_FAILURES, GUARDRAIL_MAX_STUCK_DRAINS,
#     GUARDRAIL_MAX_LOGIN_FAILURES_1H, GUARDRAIL_MAX_LOCKOUTS_1H, GUARDRAIL_MAX_RATE_LIMITED_1H,
#     GUARDRAIL_MAX_REUSE_DETECTED_1H, GUARDRAIL_MAX_OPS_AUTH_FAILURES_1H,
#     GUARDRAIL_MAX_DRAIN_FAILURES_TOTAL, GUARDRAIL_DRAIN_WINDOW_HOURS, GUARDRAIL_VERIFY_CHAIN)
#     or as flags (--max-login-failures-1h 200 …); `karaxas-ops guardrails --help` lists them.
#
# Exit codes (those of karaxas-ops guardrails): 0 every threshold holds; 1 at least one is
# breached (the table names it); 2 usage error or the metrics could not be read (connection,
# authentication).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$script_dir")"

usage() {
  echo "usage: $0 [--url <url> | <url>] [karaxas-ops guardrails flags…]  (or KARAXAS_URL; token in OPS_API_TOKEN)" >&2
}

url="${KARAXAS_URL:-}"
passthrough=()
if [[ $# -gt 0 && "$1" != -* ]]; then
  url="$1"
  shift
fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    --url)
      if [[ $# -lt 2 ]]; then
        usage
        exit 2
      fi
      url="$2"
      shift 2
      ;;
    --url=*)
      url="${1#--url=}"
      shift
      ;;
    -h | --help)
      usage
      exec node "$repo_root/bin/karaxas-ops.js" guardrails --help
      ;;
    *)
      passthrough+=("$1")
      shift
      ;;
  esac
done

if [[ -z "$url" ]]; then
  echo "check_ops_metrics_guardrails: no URL (pass --url <url> or set KARAXAS_URL)" >&2
  usage
  exit 2
fi

exec node "$repo_root/bin/karaxas-ops.js" guardrails --url "$url" ${passthrough[@]+"${passthrough[@]}"}
