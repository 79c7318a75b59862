#!/usr/bin/env bash
# Staging release smoke — the seed runbook's "Publish-drain and force-update enforcement validated
# on staging", run by deploy.yml after every staging deploy (and before prod).
#
#   KARAXAS_URL=https://api.staging.example OPS_API_TOKEN=… .github/scripts/staging-release-smoke.sh
#
# On a test platform (SMOKE_PLATFORM, default linux) it:
#   1. remembers the platform's active release policy (public GET /release/policy);
#   2. creates and activates a test policy with a login gate (karaxas-ops policy create|activate);
#   3. confirms a login from a client below the minimum gets 426 client_update_required, and one
#      at the minimum does not;
#   4. publishes a test release and waits for its drain to end `completed` (karaxas-ops publish,
#      karaxas-ops drain <id>);
#   5. confirms the admin_action_audit rows of 2 and 4 (karaxas-ops admin-audit);
#   6. always cleans up: re-creates and activates the policy it found (same values), or, when there
#      was none, activates a no-op policy (minimum 0.0.0, no gate, no force update).
# While step 2's gate is active, staging logins without X-Client-Platform are refused too (the gate
# fails closed), so the job runs after the penetration smoke suite, never beside it.
#
# Needs node (after npm ci), curl and jq. Exit 0 only if every check passed and the cleanup worked.
set -euo pipefail

: "${KARAXAS_URL:?set KARAXAS_URL to the staging base URL}"
: "${OPS_API_TOKEN:?set OPS_API_TOKEN (read from Secret Manager by the workflow)}"
export KARAXAS_URL OPS_API_TOKEN

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
platform="${SMOKE_PLATFORM:-linux}"
# Far above any real client, so the drain touches no real player.
gate_version="${SMOKE_GATE_VERSION:-999.0.0}"
release_version="${SMOKE_RELEASE_VERSION:-999.0.1}"
# A little before now: the runner's clock and the database's may differ by a few seconds.
started="$(date -u -d '-2 minutes' +%Y-%m-%dT%H:%M:%SZ)"

ops() { node "$root/bin/karaxas-ops.js" "$@"; }
step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "::error::staging release smoke: $*"
  exit 1
}

step "1. the active ${platform} policy before the smoke"
previous="$(ops policy show --platform "$platform" --json | jq -c '.policy')"
echo "previous: ${previous}"

cleanup() {
  local status=$?
  step "6. clean up: restore the ${platform} policy"
  local args
  if [[ "$previous" != "null" ]]; then
    args=(--min-supported "$(jq -r '.minSupportedVersion' <<<"$previous")" --latest "$(jq -r '.latestVersion' <<<"$previous")")
    [[ "$(jq -r '.forceUpdate' <<<"$previous")" == "true" ]] && args+=(--force-update)
    [[ "$(jq -r '.loginGate' <<<"$previous")" == "true" ]] && args+=(--login-gate)
  else
    args=(--min-supported 0.0.0 --latest 0.0.0)
  fi
  local restored
  if restored="$(ops policy create --platform "$platform" "${args[@]}" --json | jq -r '.policy.id')" &&
    ops policy activate "$restored" --json >/dev/null; then
    echo "restored: policy ${restored} (${args[*]}) is active"
  else
    echo "::error::staging release smoke: could not restore the ${platform} policy; restore it by hand (docs/runbook.md)"
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT

step "2. a test policy with a login gate (minimum ${gate_version})"
policy_id="$(ops policy create --platform "$platform" --min-supported "$gate_version" --latest "$gate_version" --login-gate --json | jq -r '.policy.id')"
[[ "$policy_id" =~ ^[0-9a-f-]{36}$ ]] || fail "policy create returned no id"
ops policy activate "$policy_id" --json | jq -e '.policy.active == true and .policy.loginGate == true' >/dev/null ||
  fail "policy ${policy_id} is not the active gated policy"

login() {
  # Unknown credentials on purpose: the gate answers before any credential check.
  curl -sS -o /tmp/smoke-login.json -w '%{http_code}' -X POST "${KARAXAS_URL%/}/auth/login" \
    -H 'Content-Type: application/json' -H "X-Client-Platform: ${platform}" -H "X-Client-Version: $1" \
    --data '{"email":"release-smoke@example.invalid","password":"not-a-real-password-000"}'
}

step "3. the login gate: 426 below the minimum, not at it"
code=""
for _ in $(seq 1 5); do
  # Instances pick up a policy change within about a second (their cache), so allow a moment.
  code="$(login 1.0.0)"
  [[ "$code" == "426" ]] && break
  sleep 1
done
[[ "$code" == "426" ]] || fail "an old client got HTTP ${code} instead of 426"
jq -e '.error.code == "client_update_required"' /tmp/smoke-login.json >/dev/null || fail "426 without client_update_required: $(cat /tmp/smoke-login.json)"
echo "old client (1.0.0): 426 client_update_required"
code="$(login "$gate_version")"
[[ "$code" != "426" ]] || fail "a client at the minimum version was gated too"
echo "current client (${gate_version}): ${code} (not gated)"

step "4. publish ${release_version} and drain ${platform} clients below ${gate_version}"
published="$(ops publish --platform "$platform" --version "$release_version" --min-supported "$gate_version" \
  --grace-seconds 5 --no-login-gate --wait --wait-timeout 300 --json)" || fail "the drain did not complete: ${published:-no output}"
drain_id="$(jq -r '.drainId' <<<"$published")"
status="$(ops drain "$drain_id" --json | jq -r '.drain.status')"
[[ "$status" == "completed" ]] || fail "drain ${drain_id} is ${status}, not completed"
echo "drain ${drain_id}: completed"

step "5. the admin_action_audit rows of this smoke"
actions="$(ops admin-audit --since "$started" --limit 500 --json | jq -c '[.items[].action]')"
for action in release.policy.create release.policy.activate release.publish; do
  jq -e --arg a "$action" 'index($a) != null' <<<"$actions" >/dev/null || fail "no admin_action_audit row ${action} since ${started} (got ${actions})"
  echo "audited: ${action}"
done

echo
echo "staging release smoke passed (login gate 426, drain ${drain_id} completed, audit rows present)"
