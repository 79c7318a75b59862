/* global document, window */
/**
 * The ops console's entry point: sign-in (ops token, or admin e-mail + password + TOTP), the
 * page tabs (`#events`, `#security-audit`, …) and sign-out.
 */
import { ApiError, api, auth, session } from './api.js';
import { createAdminAuditPage, createSecurityAuditPage } from './audit.js';
import { createChainPage } from './chain.js';
import { errorBox, h, replace } from './dom.js';
import { createEventsPage } from './events.js';
import { createGuardrailsPage } from './guardrails.js';
import { createReleasesPage } from './releases.js';

const byId = (id) => document.getElementById(id);

const views = { signIn: byId('sign-in-view'), console: byId('console-view') };
const forms = { token: byId('token-form'), admin: byId('admin-form'), totp: byId('totp-form') };
const inputs = { token: byId('token-input'), email: byId('email-input'), password: byId('password-input'), totp: byId('totp-input') };
const modes = { token: byId('mode-token'), admin: byId('mode-admin') };
const signInError = byId('sign-in-error');
const signInNotice = byId('sign-in-notice');
const totpAccount = byId('totp-account');
const identity = byId('identity');
const identityLabel = byId('identity-label');
const tabs = byId('tabs');
const pageRoot = byId('page');

/** The MFA challenge between the password and the code steps (memory only). */
let mfaToken = null;
/** The pages of the signed-in console. */
let pages = [];

// ---------------------------------------------------------------------------------------------
// Sign-in

const showError = (error, context) => replace(signInError, error === null ? null : errorBox(error, context));

const setMode = (mode) => {
  modes.token.setAttribute('aria-selected', String(mode === 'token'));
  modes.admin.setAttribute('aria-selected', String(mode !== 'token'));
  forms.token.hidden = mode !== 'token';
  forms.admin.hidden = mode !== 'admin';
  forms.totp.hidden = mode !== 'totp';
  showError(null);
  const focus = { token: inputs.token, admin: inputs.email, totp: inputs.totp }[mode];
  focus.focus();
};

const busy = (form, value) => {
  for (const element of form.querySelectorAll('button, input')) element.disabled = value;
};

/** Friendlier words for the sign-in failures an operator can act on. */
const explain = (error) => {
  if (!(error instanceof ApiError)) return error;
  const hints = {
    client_update_required: 'A release policy gates logins for web clients; sign in with the ops token instead.',
    invalid_mfa_token: 'The sign-in took too long; start again.',
    password_reset_required: 'This account must reset its password before signing in.',
  };
  const hint = hints[error.code];
  return hint === undefined ? error : new ApiError({ ...error, message: `${error.message} ${hint}` });
};

const showSignIn = (notice) => {
  views.console.hidden = true;
  identity.hidden = true;
  views.signIn.hidden = false;
  signInNotice.hidden = !notice;
  signInNotice.textContent = notice ?? '';
  setMode('token');
};

forms.token.addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = inputs.token.value.trim();
  if (token === '') return showError(new Error('Enter the ops API token.'));
  busy(forms.token, true);
  session.useOpsToken(token);
  try {
    const metrics = await api.metrics();
    inputs.token.value = '';
    enterConsole({ label: 'ops token', kind: 'ops-token' }, metrics);
  } catch (error) {
    session.clear();
    showError(error, error?.status === 401 ? 'The token was refused' : 'Could not sign in');
  } finally {
    busy(forms.token, false);
  }
  return undefined;
});

modes.token.addEventListener('click', () => setMode('token'));
modes.admin.addEventListener('click', () => setMode('admin'));
byId('totp-back').addEventListener('click', () => {
  mfaToken = null;
  setMode('admin');
});

forms.admin.addEventListener('submit', async (event) => {
  event.preventDefault();
  const email = inputs.email.value.trim();
  const password = inputs.password.value;
  if (email === '' || password === '') return showError(new Error('Enter the e-mail address and the password.'));
  busy(forms.admin, true);
  try {
    const answer = await auth.login(email, password);
    inputs.password.value = '';
    if (answer?.mfaRequired === true) {
      mfaToken = answer.mfaToken;
      totpAccount.textContent = email;
      setMode('totp');
      return undefined;
    }
    // A session without a second factor cannot use the ops API: end it at once.
    session.useAdminPair(answer);
    await auth.logout();
    session.clear();
    showError(new Error('This account has no second factor. The ops API requires an admin session signed in with TOTP: enrol TOTP first.'));
  } catch (error) {
    showError(explain(error), 'Could not sign in');
  } finally {
    busy(forms.admin, false);
  }
  return undefined;
});

forms.totp.addEventListener('submit', async (event) => {
  event.preventDefault();
  const code = inputs.totp.value.replace(/\s+/g, '');
  if (code === '' || mfaToken === null) return showError(new Error('Enter the code from your authenticator app.'));
  busy(forms.totp, true);
  try {
    const pair = await auth.verifyMfa(mfaToken, code);
    inputs.totp.value = '';
    mfaToken = null;
    session.useAdminPair(pair);
    const { user } = await api.me();
    if (user.role !== 'admin') {
      await auth.logout();
      session.clear();
      setMode('admin');
      return showError(new Error('This account is not an admin.'));
    }
    const metrics = await api.metrics();
    enterConsole({ label: user.displayName, detail: `${user.email} · admin, TOTP`, kind: 'admin' }, metrics);
  } catch (error) {
    if (session.kind !== null) {
      await auth.logout();
      session.clear();
    }
    if (error instanceof ApiError && error.code === 'invalid_mfa_token') {
      mfaToken = null;
      setMode('admin');
    }
    showError(explain(error), 'Could not sign in');
  } finally {
    busy(forms.totp, false);
  }
  return undefined;
});

// ---------------------------------------------------------------------------------------------
// The console

const pageIdOf = (hash) => hash.replace(/^#/, '').split('?')[0];

const showPage = (id) => {
  const page = pages.find((candidate) => candidate.id === id) ?? pages[0];
  if (page === undefined) return;
  for (const candidate of pages) candidate.root.hidden = candidate !== page;
  for (const link of tabs.querySelectorAll('a')) {
    if (link.dataset.page === page.id) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${page.title} · Karaxas ops console`;
  void page.show();
};

const enterConsole = (who, metrics) => {
  teardown();
  session.establish();
  const eventTypes = Object.keys(metrics.securityEvents).sort();
  pages = [createEventsPage(), createSecurityAuditPage(eventTypes), createAdminAuditPage(), createChainPage(), createReleasesPage(), createGuardrailsPage()];
  for (const page of pages) {
    page.root.hidden = true;
    page.root.dataset.page = page.id;
  }
  replace(pageRoot, pages.map((page) => page.root));
  replace(tabs, pages.map((page) => h('a', { href: `#${page.id}`, dataset: { page: page.id } }, page.title)));
  replace(identityLabel, h('span', { class: 'identity-name', id: 'identity-name' }, who.label), who.detail ? h('span', { class: 'identity-detail' }, who.detail) : null);
  identity.dataset.kind = who.kind;
  identity.hidden = false;
  views.signIn.hidden = true;
  views.console.hidden = false;
  showError(null);
  showPage(pageIdOf(window.location.hash));
};

/** Drops every page (and its charts and data) from the document. */
const teardown = () => {
  for (const page of pages) page.destroy?.();
  pages = [];
  pageRoot.replaceChildren();
  tabs.replaceChildren();
  identityLabel.replaceChildren();
};

window.addEventListener('hashchange', () => {
  if (pages.length > 0) showPage(pageIdOf(window.location.hash));
});

byId('sign-out').addEventListener('click', async () => {
  await auth.logout();
  session.clear();
  teardown();
  showSignIn('Signed out.');
});

session.onSessionEnded((reason) => {
  teardown();
  showSignIn(reason);
});

showSignIn();
