-- Baseline extensions. citext gives case-insensitive e-mail addresses with a plain unique
-- constraint (available on Cloud SQL for PostgreSQL). SHA-256 for the audit hash chain uses
-- the built-in sha256() function, so no pgcrypto is needed.
CREATE EXTENSION IF NOT EXISTS citext;
