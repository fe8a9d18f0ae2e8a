#!/usr/bin/env bash
# A real, throwaway Gitea for the tests, the benchmark and the demo: headless,
# SQLite, offline, no SSH, on 127.0.0.1 and a free port.
#
#   hack/gitea.sh start [DIR]   # prints GITEA_URL, GITEA_USER, GITEA_PASSWORD, GITEA_TOKEN, GITEA_PID, GITEA_DIR
#   hack/gitea.sh stop DIR
#
# The same lines are written to DIR/env (mode 0600). The binary comes from
# hack/build-tools.sh ($RC_CACHE/bin/gitea); GITEA_BIN overrides it. It is
# built without the bindata tag, so it reads its locales and templates from
# the Gitea module source (GITEA_STATIC overrides where that is).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"

cache=${RC_CACHE:-$HOME/.cache/reliability-center}
bin=${GITEA_BIN:-$cache/bin/gitea}
cmd=${1:-}
dir=${2:-}

die() { echo "gitea.sh: $*" >&2; exit 1; }

stop() {
  [ -n "$dir" ] || die "usage: $0 stop DIR"
  if [ -f "$dir/gitea.pid" ]; then
    pid=$(cat "$dir/gitea.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/gitea.pid"
  fi
}

start() {
  [ -x "$bin" ] || die "no gitea binary at $bin (run hack/build-tools.sh)"
  static=${GITEA_STATIC:-}
  if [ -z "$static" ] && command -v go >/dev/null; then
    static="$(go env GOMODCACHE)/code.gitea.io/gitea@$GITEA_VERSION"
  fi
  [ -d "$static/options/locale" ] || die "no Gitea assets at '$static' (set GITEA_STATIC to the Gitea source tree)"
  command -v git >/dev/null || die "gitea needs git on PATH"
  dir=${dir:-$(mktemp -d "${TMPDIR:-/tmp}/rc-gitea.XXXXXX")}
  mkdir -p "$dir"/{custom/conf,data,repos,log}
  dir=$(cd "$dir" && pwd)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  ini="$dir/custom/conf/app.ini"
  cat >"$ini" <<EOF
APP_NAME = reliability-center test forge
RUN_MODE = prod
RUN_USER = $(id -un)
WORK_PATH = $dir
; the CI and dev containers run as root; this Gitea is local and throwaway
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = http://127.0.0.1:$port/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = $dir/data
STATIC_ROOT_PATH = $static

[database]
DB_TYPE = sqlite3
PATH = $dir/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $dir/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = $secret
INTERNAL_TOKEN = $("$bin" generate secret INTERNAL_TOKEN 2>/dev/null)

[oauth2]
JWT_SECRET = $("$bin" generate secret JWT_SECRET 2>/dev/null)

[service]
DISABLE_REGISTRATION = true
DEFAULT_KEEP_EMAIL_PRIVATE = true

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[indexer]
REPO_INDEXER_ENABLED = false
; the default (bleve) re-indexes every pull request: slow on small machines, and no test searches
ISSUE_INDEXER_TYPE = db

[actions]
ENABLED = false

[cron]
ENABLED = false

[mailer]
ENABLED = false

[log]
MODE = file
LEVEL = Warn
ROOT_PATH = $dir/log

[api]
MAX_RESPONSE_ITEMS = 100

[webhook]
; the tests' operators receive webhooks on 127.0.0.1; by default Gitea refuses loopback and private targets
ALLOWED_HOST_LIST = loopback
EOF
  g() { "$bin" --config "$ini" --work-path "$dir" "$@"; }
  g migrate >"$dir/log/migrate.log" 2>&1 || die "migrate failed: $(tail -5 "$dir/log/migrate.log")"
  user=rc-admin
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  g admin user create --username "$user" --password "$password" --email "$user@example.invalid" \
    --admin --must-change-password=false >"$dir/log/admin.log" 2>&1 || die "admin user create failed: $(tail -5 "$dir/log/admin.log")"
  # --raw prints the token alone on a line; Gitea's own log lines (the root-user warning) may land on
  # stdout before or after it, so the token is the line that looks like one, and all is kept in the log.
  g admin user generate-access-token --username "$user" --token-name rc-tests --scopes all --raw \
    >"$dir/log/token.out" 2>>"$dir/log/admin.log" || die "generate-access-token failed: $(tail -5 "$dir/log/admin.log")"
  token=$(grep -E '^[0-9a-f]{40}$' "$dir/log/token.out" | tail -n 1 || true)
  [[ "$token" =~ ^[0-9a-f]{40}$ ]] || die "generate-access-token printed no token: $(tail -5 "$dir/log/token.out")"
  rm -f "$dir/log/token.out"  # a credential: not left in the log directory
  nohup "$bin" --config "$ini" --work-path "$dir" web >"$dir/log/web.log" 2>&1 </dev/null &
  echo $! >"$dir/gitea.pid"
  url="http://127.0.0.1:$port"
  # Poll with a deadline: ready when the API answers.
  for _ in $(seq 1 300); do
    if python3 - "$url" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/api/v1/version", timeout=1).read()
PY
    then
      umask 077
      printf 'GITEA_URL=%s\nGITEA_USER=%s\nGITEA_PASSWORD=%s\nGITEA_TOKEN=%s\nGITEA_PID=%s\nGITEA_DIR=%s\n' \
        "$url" "$user" "$password" "$token" "$(cat "$dir/gitea.pid")" "$dir" | tee "$dir/env"
      return 0
    fi
    kill -0 "$(cat "$dir/gitea.pid")" 2>/dev/null || die "gitea exited: $(tail -20 "$dir/log/web.log")"
    sleep 0.1
  done
  stop
  die "gitea did not answer on $url within 30s: $(tail -20 "$dir/log/web.log")"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start [DIR] | stop DIR" ;;
esac
