/**
 * Wire schemas of MFA (contract §4): the sign-in verification, TOTP enrollment and recovery codes.
 *
 * Shared by the routes (./routes.ts), the service (./service.ts), the OpenAPI document and the
 * client SDK (app/client), so this module imports nothing but zod: no Koa, no database, no Node
 * built-ins.
 */
import { z } from 'zod';

/** TOTP key rotation (ops `POST /ops/mfa/reseal`): rows re-sealed per transaction at most, and the default. */
export const MAX_RESEAL_BATCH_SIZE = 5_000;
export const DEFAULT_RESEAL_BATCH_SIZE = 1_000;

/** Recovery codes issued at activation and on regeneration. */
export const RECOVERY_CODE_COUNT = 10;

/** A TOTP code (6 digits) or a recovery code; spaces and dashes are tolerated. */
export const mfaCodeSchema = z.string().trim().min(6, 'must be a 6-digit code or a recovery code').max(64);

/** Body of `POST /auth/mfa/totp/activate`, `/auth/mfa/totp/disable` and `/auth/mfa/recovery-codes`. */
export const mfaCodeBodySchema = z.object({ code: mfaCodeSchema }).strict();
/** Body of `POST /auth/mfa/verify`: the `mfaToken` of the login's MFA challenge and a code. */
export const mfaVerifyBodySchema = z.object({ mfaToken: z.string().min(1).max(128), code: mfaCodeSchema }).strict();

/** `POST /auth/mfa/totp/enroll` → 200. */
export const totpEnrollmentSchema = z.object({
  /** Base32 (RFC 4648) secret, for manual entry into an authenticator app. */
  secret: z.string(),
  /** `otpauth://totp/Karaxas:<email>?secret=…&issuer=Karaxas` for a QR code. */
  otpauthUri: z.string().startsWith('otpauth://totp/'),
});
export type TotpEnrollment = z.infer<typeof totpEnrollmentSchema>;

/** `POST /auth/mfa/totp/activate` and `POST /auth/mfa/recovery-codes` → 200 (shown once). */
export const recoveryCodesSchema = z.object({ recoveryCodes: z.array(z.string()).length(RECOVERY_CODE_COUNT) });
export type RecoveryCodes = z.infer<typeof recoveryCodesSchema>;
