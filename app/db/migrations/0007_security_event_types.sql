-- New security event types. Migrations are append-only, so the event_type CHECK of 0002 is
-- replaced here; it must list exactly securityEventTypes of app/audit/types.ts (a test compares
-- them with the newest migration that defines the constraint).
--   recovery_codes_regenerated: a user replaced their MFA recovery codes (the old ones stop working).
--
-- NOT VALID then VALIDATE: validating takes a SHARE UPDATE EXCLUSIVE lock, so appends continue
-- while existing rows are checked.
ALTER TABLE security_event_audit DROP CONSTRAINT security_event_audit_event_type_check;
ALTER TABLE security_event_audit ADD CONSTRAINT security_event_audit_event_type_check CHECK (event_type IN (
    'user_registered',
    'login_succeeded',
    'login_failed',
    'account_locked',
    'rate_limited',
    'mfa_enrolled',
    'mfa_enabled',
    'mfa_disabled',
    'mfa_failed',
    'mfa_replay_rejected',
    'recovery_code_used',
    'refresh_rotated',
    'refresh_token_grace_reuse',
    'refresh_token_reuse_detected',
    'session_revoked',
    'session_bulk_revocation',
    'logout',
    'ws_ticket_issued',
    'ws_ticket_rejected',
    'ws_origin_rejected',
    'chat_rate_limited',
    'chat_muted',
    'password_reset_forced',
    'password_changed',
    'ops_auth_failed',
    'role_changed',
    'recovery_codes_regenerated'
)) NOT VALID;
ALTER TABLE security_event_audit VALIDATE CONSTRAINT security_event_audit_event_type_check;
