# Sourced by scripts/setup and scripts/test (from the repository root): the one
# install-and-build preamble. `prepare` installs the Debian packages (idempotent),
# runs `npm ci` when node_modules is missing or older than the lock file, and builds.
# Progress and tool output go to stderr; on failure it says which step failed and
# returns 1, and the caller decides how to end.

prepare() {
  printf '== %s\n' dependencies >&2
  scripts/install-deps >&2 || { echo "install-deps failed" >&2; return 1; }
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund >&2 || { echo "npm ci failed" >&2; return 1; }
  fi
  # cmake-js builds against the local Node headers rather than downloading them
  if [ -f /usr/include/node/node_api.h ]; then
    export npm_config_nodedir="${npm_config_nodedir:-/usr}"
  fi
  printf '== %s\n' build >&2
  npm run --silent build >&2 || { echo "build failed" >&2; return 1; }
}
