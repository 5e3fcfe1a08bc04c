#!/usr/bin/env bash
# End-to-end check of the Docker setup (Dockerfile, compose.yaml): builds the image, starts the whole stack
# under a compose project of its own, and checks from this machine, over 127.0.0.1, that it works and keeps
# its data:
#   1. the stack comes up: the migration exits 0, PostgreSQL and the server become healthy; the server's port
#      is published on 127.0.0.1 only, PostgreSQL's not at all; the bridge runs as a non-root user;
#   2. an API key made with the CLI (`compose exec server badge-bridge api-keys create`) is accepted;
#   3. an event POSTed to /api/v1/events is stored (202, then 200 as a duplicate) and the worker turns it into
#      the "welcome" award, visible through the API, whose Open Badge and PNG image are served;
#   4. server, worker and scheduler see the same signing keys (one shared data volume);
#   5. after `compose restart`, and again after `compose down` + `compose up`, the awards, events, API key and
#      signing keys are all still there and new events are still processed;
#   6. with the workers scaled to 2, a batch of events for 20 learners earns 20 awards, each exactly once.
# The stack and its volumes are removed on exit (`compose down -v`), whatever happened. Prints each check;
# exits non-zero at the first failure, after the logs of the services.
#
# Usage: bash docker/check.sh      (as a user who may use docker; needs curl and jq)
# It uses `docker compose` when there is one, else docker-compose (1.29), and first makes the base images
# with docker/local-base-images.sh where Docker Hub cannot be reached. It builds lms-badge-bridge:check and
# ignores .env: it sets what it needs (a random database password, a free port, a platform).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${CHECK_PROJECT:-bridge-check-$$}
TIMEOUT=${CHECK_TIMEOUT:-180}   # seconds to wait for each thing that takes time
WORK=$(mktemp -d /tmp/bridge-check.XXXXXX)

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  echo "check: neither 'docker compose' nor docker-compose is installed" >&2
  exit 1
fi
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "check: $tool is needed" >&2; exit 1; }
done

# Neither the developer's .env (an empty env file instead) nor the shell's BRIDGE_*, POSTGRES_* and COMPOSE_*
# variables may change the check; BRIDGE_BUILD_CA_CERTS alone is kept (see below).
: >"$WORK/empty.env"
while read -r name; do
  [ "$name" = BRIDGE_BUILD_CA_CERTS ] || unset "$name"
done < <(compgen -e | grep -E '^(BRIDGE_|POSTGRES_|COMPOSE_)' || true)
compose() { "${COMPOSE[@]}" --env-file "$WORK/empty.env" -f compose.yaml -p "$PROJECT" "$@"; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export BRIDGE_IMAGE_TAG=check   # lms-badge-bridge:check, so the check leaves the :latest of a running stack alone
export BRIDGE_HOST_PORT=$PORT
export BRIDGE_PUBLIC_BASE_URL=$BASE
export POSTGRES_PASSWORD
POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# A platform that takes events from the REST API, given as the environment override a deployment would use.
export BRIDGE_PLATFORMS='[{"id": "check", "kind": "custom", "name": "docker/check.sh"}]'
# A build behind a TLS-intercepting proxy must trust its CA: this machine's extra certificates, if any.
if [ -z "${BRIDGE_BUILD_CA_CERTS:-}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  BRIDGE_BUILD_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)
  export BRIDGE_BUILD_CA_CERTS
fi

step() { echo "== $*"; }
ok() { echo "ok - $*"; }
fail() {
  echo "FAIL - $*" >&2
  echo "--- last log lines of each service ---" >&2
  compose logs --no-color --tail=30 >&2 2>&1 || true
  exit 1
}

cleanup() {
  status=$?
  step "removing the stack and its volumes (project $PROJECT)"
  compose down -v --remove-orphans >"$WORK/down.log" 2>&1 || cat "$WORK/down.log" >&2
  rm -rf "$WORK"
  if [ "$status" = 0 ]; then echo "check: all passed"; else echo "check: FAILED" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ------------------------------------------------------------------------------------------------
container_ids() { compose ps -a -q "$1"; }  # -a: stopped ones too (migrate has exited; a crashed worker counts)

wait_healthy() {  # every container of service $1 healthy (or running, without a healthcheck) within TIMEOUT
  local service=$1 deadline=$((SECONDS + TIMEOUT)) ids states
  while :; do
    ids=$(container_ids "$service")
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      states=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids)
      # healthy, or running for a service without a healthcheck (worker, scheduler)
      if ! grep -qvE '^(healthy|running)$' <<<"$states"; then
        return 0
      fi
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "$service not healthy within ${TIMEOUT}s (${states:-no container})"
    sleep 2
  done
}

wait_stack() {  # the migration succeeded, then PostgreSQL and the server are healthy, workers and scheduler up
  wait_healthy postgres
  local migrate deadline=$((SECONDS + TIMEOUT))
  migrate=$(container_ids migrate)
  [ -n "$migrate" ] || fail "no migrate container"
  while [ "$(docker inspect -f '{{.State.Status}}' "$migrate")" != exited ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the migration did not finish within ${TIMEOUT}s"
    sleep 1
  done
  [ "$(docker inspect -f '{{.State.ExitCode}}' "$migrate")" = 0 ] || fail "the migration exited non-zero"
  wait_healthy server
  wait_healthy worker
  wait_healthy scheduler
}

api() {  # api METHOD PATH [JSON]: prints the body, sets CODE
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$WORK/body" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $API_KEY")
  [ -z "$data" ] || args+=(-H 'Content-Type: application/json' --data "$data")
  CODE=$(curl "${args[@]}" "$BASE$path") || fail "$method $path: no answer"
  cat "$WORK/body"
}

expect_code() {  # expect_code WANTED WHAT
  [ "$CODE" = "$1" ] || fail "$2: HTTP $CODE, expected $1: $(head -c 300 "$WORK/body")"
}

post_event() {  # post_event KEY LEARNER: one login event
  api POST /api/v1/events \
    "{\"platform\": \"check\", \"event_key\": \"$1\", \"kind\": \"login\", \"learner\": \"$2\"}"
}

welcome_awards() {  # the learners holding "welcome" on the check platform, one line each, sorted
  api GET "/api/v1/awards?platform=check&limit=1000" | jq -r '.awards[] | select(.badge_id == "welcome") | .learner' | sort
}

wait_awarded() {  # wait_awarded N: until N learners hold "welcome"
  local wanted=$1 deadline=$((SECONDS + TIMEOUT)) have
  while :; do
    have=$(welcome_awards | grep -c . || true)
    [ "$have" -lt "$wanted" ] || break
    [ "$SECONDS" -lt "$deadline" ] || fail "only $have of $wanted welcome awards after ${TIMEOUT}s"
    sleep 1
  done
}

snapshot() {  # what must survive a restart: awards, events, the signing keys
  {
    api GET "/api/v1/awards?platform=check&limit=1000&order=oldest" | jq -c '[.awards[] | {id, badge_id, learner, assertion}]'
    api GET "/api/v1/events?platform=check&limit=1000" | jq -c '[.events[] | {id, event_key, status}] | sort_by(.id)'
    curl -sS "$BASE/ob/jwks.json" | jq -c '[.keys[].kid] | sort'
    compose exec -T server badge-bridge keys list 2>/dev/null | cut -f1,2,4
  } >"$1"
  # Something to compare: awards and events seen through the API (so the key works), keys listed.
  if [ "$(sed -n 1p "$1")" = "[]" ] || [ "$(sed -n 2p "$1")" = "[]" ] || [ "$(sed -n 3p "$1")" = "[]" ] \
    || [ "$(wc -l <"$1")" -lt 5 ]; then
    fail "could not read awards, events and keys: $(head -c 300 "$1")"
  fi
}

# --- 0. images ----------------------------------------------------------------------------------------------
step "base images (pulled, or made locally where Docker Hub is out of reach)"
bash docker/local-base-images.sh
ok "debian:bookworm-slim and postgres:15-bookworm present"

step "building the image (${COMPOSE[*]} build)"
compose build >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "the image did not build"; }
ok "built lms-badge-bridge:$BRIDGE_IMAGE_TAG, $(docker image inspect -f '{{.Size}}' "lms-badge-bridge:$BRIDGE_IMAGE_TAG" | awk '{printf "%d MB", $1 / 1000000}')"

# --- 1. up --------------------------------------------------------------------------------------------------
step "starting the stack (project $PROJECT, $BASE)"
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up failed"; }
wait_stack
ok "migration exited 0; postgres and server healthy; worker and scheduler running"

CODE=$(curl -sS -o "$WORK/body" -w '%{http_code}' "$BASE/healthz") || fail "no answer from $BASE/healthz"
expect_code 200 "GET /healthz"
[ "$(jq -r .status "$WORK/body")" = ok ] || fail "/healthz: $(cat "$WORK/body")"
ok "GET $BASE/healthz: 200 $(jq -c . "$WORK/body")"

published=$(docker port "$(container_ids server)" 8000/tcp)
[ "$published" = "127.0.0.1:$PORT" ] || fail "server published on '$published', expected 127.0.0.1:$PORT only"
ok "server port published on 127.0.0.1:$PORT only"
[ -z "$(docker port "$(container_ids postgres)")" ] || fail "PostgreSQL has a published port"
ok "PostgreSQL not published"
for service in server worker scheduler; do
  uid=$(compose exec -T "$service" id -u | tr -d '\r')
  [ "$uid" != 0 ] || fail "$service runs as root"
done
ok "server, worker and scheduler run as uid $uid (not root)"

# --- 2. API key ---------------------------------------------------------------------------------------------
step "API key made with the CLI"
API_KEY=$(compose exec -T server badge-bridge api-keys create check --scope write 2>"$WORK/key.err" | tr -d '\r') \
  || { cat "$WORK/key.err" >&2; fail "badge-bridge api-keys create failed"; }
[ -n "$API_KEY" ] || fail "badge-bridge api-keys create printed no key"
api GET /api/v1/badges >/dev/null
expect_code 200 "GET /api/v1/badges with the new key"
ok "key accepted; $(jq '.badges | length' "$WORK/body") badges defined"

# --- 3. an event becomes an award ---------------------------------------------------------------------------
step "an event turns into an award"
post_event check-login-1 learner-1 >/dev/null
expect_code 202 "POST /api/v1/events"
ok "POST /api/v1/events: 202 $(jq -c . "$WORK/body")"
post_event check-login-1 learner-1 >/dev/null
expect_code 200 "POST /api/v1/events (the same event again)"
[ "$(jq -r .status "$WORK/body")" = duplicate ] || fail "the repeated event was not a duplicate: $(cat "$WORK/body")"
ok "the same event again: 200 duplicate"
wait_awarded 1
award=$(api GET "/api/v1/awards?platform=check&learner=learner-1" | jq -c '.awards[0]')
ok "the worker awarded it: $(jq -c '{id, badge_id, learner, awarded_at}' <<<"$award")"
assertion=$(jq -r .assertion <<<"$award")
[[ "$assertion" == "$BASE/ob/assertions/"* ]] || fail "assertion URL $assertion is not under $BASE"
CODE=$(curl -sS -o "$WORK/body" -w '%{http_code}' -H 'Accept: application/json' "$assertion")
expect_code 200 "GET the Open Badges assertion"
[ "$(jq -r .type "$WORK/body")" = Assertion ] || fail "the assertion is not an OB 2.0 Assertion"
CODE=$(curl -sS -o "$WORK/badge.png" -w '%{http_code}' "$assertion/badge.png")
expect_code 200 "GET the baked badge image"
[ "$(head -c 8 "$WORK/badge.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "badge.png is no PNG"
ok "Open Badge served: assertion 200, baked PNG $(wc -c <"$WORK/badge.png") bytes (cairo and fonts work)"

# --- 4. one set of keys -------------------------------------------------------------------------------------
step "server, worker and scheduler share the data volume"
compose exec -T server cat /data/keys/keys.json /data/keys/lti/keys.json >"$WORK/keys.server"
for service in worker scheduler; do
  compose exec -T "$service" cat /data/keys/keys.json /data/keys/lti/keys.json >"$WORK/keys.$service"
  cmp -s "$WORK/keys.server" "$WORK/keys.$service" || fail "$service sees other signing keys than the server"
done
ok "the same signing keys in every container: $(jq -rs '[.[].keys[].kid] | join(", ")' "$WORK/keys.server")"

# --- 5. restarts lose nothing -------------------------------------------------------------------------------
snapshot "$WORK/before"
step "compose restart"
compose restart >"$WORK/restart.log" 2>&1 || { cat "$WORK/restart.log" >&2; fail "compose restart failed"; }
wait_stack
snapshot "$WORK/after-restart"
diff -u "$WORK/before" "$WORK/after-restart" >&2 || fail "awards, events or keys changed across a restart"
ok "after restart: same awards, events, API key and signing keys"
post_event check-login-2 learner-2 >/dev/null
expect_code 202 "POST /api/v1/events after the restart"
wait_awarded 2
ok "a new event is processed after the restart"

snapshot "$WORK/before"
step "compose down (volumes kept), then up"
compose down >"$WORK/down1.log" 2>&1 || { cat "$WORK/down1.log" >&2; fail "compose down failed"; }
[ -z "$(container_ids server)" ] || fail "containers left after compose down"
compose up -d >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log" >&2; fail "compose up (again) failed"; }
wait_stack
snapshot "$WORK/after-up"
diff -u "$WORK/before" "$WORK/after-up" >&2 || fail "awards, events or keys changed across down and up"
ok "after down and up: same awards, events, API key and signing keys"
post_event check-login-3 learner-3 >/dev/null
expect_code 202 "POST /api/v1/events after down and up"
wait_awarded 3
ok "a new event is processed after down and up"

# --- 6. two workers -----------------------------------------------------------------------------------------
step "scaling the workers to 2"
compose up -d --scale worker=2 >"$WORK/scale.log" 2>&1 || { cat "$WORK/scale.log" >&2; fail "compose up --scale worker=2 failed"; }
wait_stack
workers=$(container_ids worker | grep -c .)
[ "$workers" = 2 ] || fail "$workers worker containers running, expected 2"
ok "2 worker containers running"
batch=$(jq -nc '{events: [range(100; 120) | {platform: "check", event_key: "check-batch-\(.)", kind: "login", learner: "learner-\(.)"}]}')
api POST /api/v1/events "$batch" >/dev/null
expect_code 202 "POST /api/v1/events (a batch of 20)"
[ "$(jq .accepted "$WORK/body")" = 20 ] || fail "batch: $(cat "$WORK/body")"
ok "a batch of 20 events for 20 learners accepted"
wait_awarded 23
awards=$(welcome_awards)
[ "$(uniq -d <<<"$awards")" = "" ] || fail "a learner holds welcome twice: $(uniq -d <<<"$awards" | head -3)"
[ "$(grep -c . <<<"$awards")" = 23 ] || fail "$(grep -c . <<<"$awards") welcome awards, expected 23"
pending=$(api GET "/api/v1/events?platform=check&status=pending" | jq '.events | length')
failed=$(api GET "/api/v1/events?platform=check&status=failed" | jq '.events | length')
if [ "$pending" != 0 ] || [ "$failed" != 0 ]; then fail "$pending events pending, $failed failed"; fi
ok "23 learners hold welcome, each once; no event pending or failed"
shares=$(for id in $(container_ids worker); do
  echo "$(docker inspect -f '{{.Name}}' "$id" | tr -d /) $(docker logs "$id" 2>&1 | grep -c '"award.made"' || true)"
done | paste -sd, - | sed 's/,/, /g')
ok "awards made by each worker container (either may have taken the whole batch): $shares"
CODE=$(curl -sS -o "$WORK/body" -w '%{http_code}' "$BASE/healthz")
expect_code 200 "GET /healthz with two workers"
ok "GET /healthz: 200 $(jq -c .queue "$WORK/body")"
