#!/usr/bin/env bash
# Starts, stops and reports the kvshard processes listed in the config.
#
#   ./launch.sh [start|stop|status|restart] [SHARD [a|b]]
#   ./launch.sh start SHARD a --overwrite-replica
#                          start member a as primary from its own data dir's data (empty or restored)
#                          and make the other member take exactly that, replacing what it holds
#   ./launch.sh verify     compare every replica with its primary
#   ./launch.sh failover SHARD [--force [--without-majority]]
#                          make SHARD's replica its primary (the old primary becomes its replica); with
#                          --force, for a primary that is down (see docs/failover.md for what it can lose);
#                          --without-majority also when no majority of nodes is left to grant it (risky)
#
# SHARD's two members are named by their place in the config, not by their role, which a failover
# swaps: "a" is the member at `address` (the primary at first), "b" the one at `replica`. Their data
# dirs, PID files and logs are <shard>-a and <shard>-b; dirs named <shard>-primary and <shard>-replica
# by earlier versions are renamed on first start. `status` shows which member is primary now.
#
# To resize, edit sharding.toml (add a shard at the end, or remove the last one) and run restart: keys
# move to their new shards while the cluster serves. A shard removed from the file but with a data dir
# here is started in drain mode until its keys have moved, then its data dirs go to $KV_DATA_DIR/retired.
#
# KV_CONFIG and KV_DATA_DIR override the paths of the config and the data dir (default: sharding.toml
# and data beside this script); relative ones are taken from the current directory. PIDs and logs live
# under $KV_DATA_DIR/run and $KV_DATA_DIR/logs; only the user running the cluster may read any of
# them. Processes are only ever signalled by the PIDs this script recorded, never by name. A bad argument
# or config exits with 2.
set -euo pipefail

# Stored values, logs (which name keys) and the cluster token are for the user running the cluster only:
# what this script creates, and what the nodes it starts create, is private (dirs 700, files 600).
caller_umask=$(umask)
umask 077

# The script works from its own directory (dist/, node_modules), but a relative path in KV_CONFIG or
# KV_DATA_DIR names a file from the caller's directory, like any path on a command line: both are made
# absolute before the cd.
absolute() {
  case $1 in
    /*) echo "$1" ;;
    *) echo "$PWD/${1#./}" ;;
  esac
}
repo_dir=$(cd "$(dirname "$0")" && pwd)
script="$repo_dir/$(basename "$0")"
config=$(absolute "${KV_CONFIG:-$repo_dir/sharding.toml}")
data_dir=$(absolute "${KV_DATA_DIR:-$repo_dir/data}")
cd "$repo_dir"
run_dir="$data_dir/run"
log_dir="$data_dir/logs"
# An .out file (see out_file) is cut to its last out_bytes_keep bytes at a start once it passes out_bytes_max.
out_bytes_max=$((1024 * 1024))
out_bytes_keep=$((256 * 1024))
start_wait_s=${KV_START_WAIT_S:-30}   # how long a node may take to answer /health
stop_wait_s=${KV_STOP_WAIT_S:-15}     # how long a node may drain before SIGKILL
# After an idle spell, V8's memory reducer and a shrunken young generation made GETs cost about a quarter
# more CPU for many seconds (measured; see nodeFlags in src/harness/local-cluster.ts, which tests and bench use).
node_flags="--no-memory-reducer --min-semi-space-size=16"

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$script"
}

# Exit status 2 is for a bad argument, setting or config, as for kvshard itself. The message names the
# word at fault, so a typo is not mistaken for a failure to start.
die() {
  echo "launch.sh: $1" >&2
  exit 2
}

usage_error() {
  echo "launch.sh: $1" >&2
  echo >&2
  usage >&2
  exit 2
}

# The optional SHARD and MEMBER of start, stop, status and restart. Whether SHARD is in the config is
# checked by targets.
check_target_args() {
  [ $# -le 2 ] || usage_error "unexpected argument(s) '${*:3}' after SHARD and MEMBER"
  [ $# -eq 0 ] || [ -n "$1" ] || usage_error "empty shard name"
  if [ $# -ge 2 ] && { [ "$2" = primary ] || [ "$2" = replica ]; }; then
    local member=a field=address
    [ "$2" = replica ] && member=b field=replica
    usage_error "members are named a and b, since a failover swaps roles: '$1 $member' is the member at $1's $field in the config"
  fi
  [ $# -lt 2 ] || [ "$2" = a ] || [ "$2" = b ] || usage_error "unknown member '$2' (expected a or b)"
}

# Wait times go into shell arithmetic, where a fraction is a syntax error, a word silently counts as 0
# and a leading zero means octal: they are checked here and then read as decimal.
check_seconds() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, got '$2'"
}

# The path looked at is named in full: for a relative KV_CONFIG it is not the one the caller typed.
check_config_readable() {
  [ -f "$config" ] && [ -r "$config" ] || die "cannot read the config $config${KV_CONFIG:+ (KV_CONFIG=$KV_CONFIG)}"
}

# The build belongs to the checkout, not to the cluster, so it keeps the caller's umask.
ensure_built() (
  umask "$caller_umask"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "installing dependencies (npm ci)..."
    npm ci --no-audit --no-fund >/dev/null
  fi
  if [ ! -f dist/cli/cli.js ] || [ -n "$(find src tsconfig.json package.json -newer dist/cli/cli.js -print -quit)" ]; then
    echo "building..."
    npm run --silent build
  fi
)

# Prints "name member address" for every process in the config, filtered by the optional SHARD/MEMBER.
targets() {
  local want_shard=${1:-} want_member=${2:-} list
  if ! list=$(node dist/cli/cli.js check-config --config "$config" 2>&1); then
    echo "$list" >&2
    exit 2
  fi
  local found=0 name idx address replica
  while read -r name idx address replica; do
    [ -n "$want_shard" ] && [ "$name" != "$want_shard" ] && continue
    found=1
    if [ -z "$want_member" ] || [ "$want_member" = a ]; then echo "$name a $address"; fi
    if [ -z "$want_member" ] || [ "$want_member" = b ]; then echo "$name b $replica"; fi
  done <<< "$list"
  if [ "$found" = 0 ]; then
    echo "no shard named '$want_shard' in $config" >&2
    exit 2
  fi
}

# Shards with a data dir of member a here (or an earlier version's <shard>-primary) that are no longer
# in the config: they drain (see the top).
drains() {
  local list name dir
  list=$(node dist/cli/cli.js check-config --config "$config" 2>/dev/null | cut -d' ' -f1) || return 0
  for dir in "$data_dir"/*-a "$data_dir"/*-primary; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    name=${name%-*}
    grep -qx -- "$name" <<< "$list" || echo "$name"
  done | sort -u
}

# "name member -" for every process with a PID file here, whatever the config says now (PID files of
# earlier versions name a role instead: they are stopped the same way).
recorded() {
  local file base
  for file in "$run_dir"/*.pid; do
    [ -f "$file" ] || continue
    base=$(basename "$file" .pid)
    echo "${base%-*} ${base##*-} -"
  done
}

# With [coordinator] in the config: its etcd endpoints, one per line (nothing without one).
etcd_endpoints() {
  node dist/cli/cli.js check-config --config "$config" -o json |
    node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => { for (const e of JSON.parse(t).coordinator?.etcd ?? []) console.log(e); });'
}

etcd_answers() {
  curl -s -m 2 -o /dev/null -X POST -d '{"key":"AA=="}' "http://$1/v3/kv/range"
}

# With [coordinator]: an etcd that answers at one of its endpoints is used as it is. When none answers
# and the first is a loopback address, a local single-member etcd is started there (its peer port the
# next one), with its data under $KV_DATA_DIR/etcd; ./launch.sh stop stops it.
ensure_etcd() {
  local endpoints endpoint host port pid deadline
  endpoints=$(etcd_endpoints) || exit 2
  [ -n "$endpoints" ] || return 0
  for endpoint in $endpoints; do
    if etcd_answers "$endpoint"; then return 0; fi
  done
  endpoint=$(head -n 1 <<< "$endpoints")
  host=${endpoint%:*}
  port=${endpoint##*:}
  case "$host" in
    127.*|localhost) ;;
    *) die "no etcd answers at $(tr '\n' ' ' <<< "$endpoints")and $endpoint is not on this host: start etcd there first" ;;
  esac
  command -v etcd >/dev/null || die "etcd is not installed: install the Debian package etcd-server (apt-get install etcd-server)"
  mkdir -p "$data_dir/etcd"
  etcd --name kvshard --data-dir "$data_dir/etcd/data" --listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
    --listen-peer-urls "http://$host:$((port + 1))" --initial-advertise-peer-urls "http://$host:$((port + 1))" \
    --initial-cluster "kvshard=http://$host:$((port + 1))" >> "$log_dir/etcd.out" 2>&1 &
  pid=$!
  echo "$pid" > "$data_dir/etcd/pid"
  deadline=$((SECONDS + start_wait_s))
  until etcd_answers "$endpoint"; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then die "etcd did not start at $endpoint; see $log_dir/etcd.out"; fi
    sleep 0.2
  done
  echo "started etcd at $endpoint (pid $pid, data in $data_dir/etcd)"
}

# Stops the etcd this script started, if it runs (by its recorded PID).
stop_etcd() {
  local file=$data_dir/etcd/pid pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--name kvshard "; then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "stopped etcd (pid $pid)"
  fi
  rm -f "$file"
}

# Replication endpoints need a cluster secret. Unless the config or the environment sets one, a random
# token is generated once and kept (mode 600, by the umask) in the data dir, shared by every process
# started here.
ensure_token() {
  [ -n "${KV_CLUSTER_TOKEN:-}" ] && return 0
  grep -Eq '^[[:space:]]*token[[:space:]]*=' "$config" && return 0
  local file="$data_dir/cluster.token"
  if [ ! -s "$file" ]; then
    mkdir -p "$data_dir"
    od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$file"
  fi
  KV_CLUSTER_TOKEN=$(cat "$file")
  export KV_CLUSTER_TOKEN
}

# Creates run/ and logs/, and closes what an earlier version of this script, or a hand, left readable by
# others in the data dir (data files were 644 in dirs of 755).
ensure_private_dirs() {
  mkdir -p "$run_dir" "$log_dir"
  find "$data_dir" \( -type d -o -type f \) -perm /077 -exec chmod go= {} + ||
    die "cannot make $data_dir readable by $(id -un) only"
}

pid_file() { echo "$run_dir/$1-$2.pid"; }
# What a node prints before its logger exists, or as it crashes; its log proper is the JSON lines it
# writes itself to logs/<shard>-<member>.N.log (rolled by size, bounded in number).
out_file() { echo "$log_dir/$1-$2.out"; }
# The node's newest JSON log file.
json_log() { ls -1v "$log_dir/$1-$2".[0-9]*.log 2>/dev/null | tail -n 1; }

# Keeps the tail of an .out file once it passes out_bytes_max, so that restarts never make it grow
# without bound.
trim_out() {
  local file=$1
  [ -f "$file" ] || return 0
  if [ "$(stat -c %s "$file")" -gt "$out_bytes_max" ]; then
    tail -c "$out_bytes_keep" "$file" > "$file.tmp" && mv "$file.tmp" "$file"
  fi
}

# Removes the PID files of processes that have exited, such as a drain that finished (it exits 0 once
# its data dirs are retired), so that run/ lists only what runs. A PID file whose PID now runs another
# program is left for start to replace: a node that a concurrent start has just forked looks like that
# until it execs node.
forget_exited() {
  local file pid
  for file in "$run_dir"/*.pid; do
    pid=$(cat "$file" 2>/dev/null) || continue   # no file: none recorded, or a concurrent stop removed it
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then rm -f "$file"; fi
  done
}

# The recorded PID of a node when that PID is still our kvshard process (not a reused PID).
live_pid() {
  local file pid
  file=$(pid_file "$1" "$2")
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  local command=serve
  [ "$2" = drain ] && command=drain
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$command .*--shard $1 " || return 1
  echo "$pid"
}

# Whether the node at ADDRESS answers /health with 200, and, given PID, whether that node is our
# process (another process on the same port must not pass for it).
healthy() {
  local host=${1%:*} port=${1##*:} want_pid=${2:-} reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' '$1' >&3 && head -c 4096 <&3" 2>/dev/null) || return 1
  [[ "$reply" == "HTTP/1.1 200"* ]] || return 1
  [ -z "$want_pid" ] || [[ "$reply" == *"\"pid\":$want_pid}"* ]]
}

start_one() {
  local name=$1 member=$2 address=$3 pid flag=""
  if pid=$(live_pid "$name" "$member"); then
    echo "$name $member already running (pid $pid)"
    return 0
  fi
  # The node takes the role the cluster's epochs give it; --replica says it is member b.
  [ "$member" = b ] && flag="--replica"
  [ "$member" = a ] && flag="$overwrite_replica"
  trim_out "$(out_file "$name" "$member")"
  nohup node $node_flags dist/cli/cli.js serve --config "$config" --shard "$name" $flag --data-dir "$data_dir" --log-to file \
    >> "$(out_file "$name" "$member")" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$name" "$member")"
}

wait_healthy() {
  local name=$1 member=$2 address=$3 pid deadline=$((SECONDS + start_wait_s))
  pid=$(cat "$(pid_file "$name" "$member")")
  until healthy "$address" "$pid"; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "$name $member failed to start on $address; last lines of $(out_file "$name" "$member") and its log:" >&2
      tail -n 20 "$(out_file "$name" "$member")" >&2
      local log
      log=$(json_log "$name" "$member")
      [ -z "$log" ] || tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

print_table() {
  printf '%-12s %-8s %-22s %-8s %s\n' SHARD MEMBER ADDRESS PID STATE
  local name member address pid state
  while read -r name member address; do
    if pid=$(live_pid "$name" "$member"); then
      if healthy "$address" "$pid"; then state=up; else state=unresponsive; fi
    else
      pid=-; state=down
    fi
    printf '%-12s %-8s %-22s %-8s %s\n' "$name" "$member" "$address" "$pid" "$state"
  done <<< "$1"
}

start_drain() {
  local name=$1 pid
  if pid=$(live_pid "$name" drain); then
    echo "$name drain already running (pid $pid)"
    return 0
  fi
  trim_out "$(out_file "$name" drain)"
  nohup node $node_flags dist/cli/cli.js drain --config "$config" --shard "$name" --data-dir "$data_dir" --log-to file \
    >> "$(out_file "$name" drain)" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$name" drain)"
  echo "$name is no longer in $config: draining its keys into the other shards (pid $!, log $log_dir/$name-drain.N.log)"
}

print_drains() {
  local name pid
  for name in $(drains); do
    if pid=$(live_pid "$name" drain); then
      echo "$name: draining (pid $pid); it exits and retires its data dirs when its keys have moved"
    else
      echo "$name: removed from $config, data dir still here, drain not running: ./launch.sh start resumes it"
    fi
  done
}

cmd_start() {
  ensure_built
  forget_exited
  local list failed=0 name member address
  list=$(targets "$@")
  ensure_token
  ensure_private_dirs
  ensure_etcd
  while read -r name member address; do start_one "$name" "$member" "$address"; done <<< "$list"
  while read -r name member address; do wait_healthy "$name" "$member" "$address" || failed=1; done <<< "$list"
  if [ $# -eq 0 ]; then
    for name in $(drains); do start_drain "$name"; done
  fi
  print_table "$list"
  return $failed
}

cmd_stop() {
  ensure_built
  forget_exited
  local list name member address pid pids=() deadline
  if [ $# -eq 0 ]; then
    # Every process started here, also those of shards no longer in the config and drains (which resume
    # from where they stood on the next start).
    list=$(recorded)
  else
    list=$(targets "$@")
  fi
  while read -r name member address; do
    if pid=$(live_pid "$name" "$member"); then
      kill -TERM "$pid" && pids+=("$pid")
    fi
  done <<< "$list"
  deadline=$((SECONDS + stop_wait_s))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        echo "pid $pid did not stop within ${stop_wait_s}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
  while read -r name member address; do rm -f "$(pid_file "$name" "$member")"; done <<< "$list"
  echo "stopped ${#pids[@]} process(es)"
  # The etcd this script started goes with the whole cluster, after the nodes (a primary releases its key).
  if [ $# -eq 0 ]; then stop_etcd; fi
}

cmd_status() {
  ensure_built
  forget_exited
  local list
  list=$(targets "$@")
  print_table "$list"
  print_drains
  echo
  node dist/cli/cli.js status --config "$config"
}

cmd_failover() {
  ensure_built
  ensure_token
  node dist/cli/cli.js failover --config "$config" --shard "$1" "${@:2}"
}

cmd_verify() {
  ensure_built
  ensure_token
  node dist/cli/cli.js verify --config "$config"
}

# Every argument and setting is checked before anything is built, written or started.
command=start
if [ $# -gt 0 ]; then
  command=$1
  shift
fi
# --overwrite-replica is for member a only: it replaces what the other member holds.
overwrite_replica=""
if [ "$command" = start ] && [ $# -gt 0 ] && [ "${*: -1}" = --overwrite-replica ]; then
  set -- "${@:1:$(($# - 1))}"
  [ $# -eq 2 ] && [ "$2" = a ] || usage_error "--overwrite-replica goes with member a of one shard: ./launch.sh start SHARD a --overwrite-replica"
  overwrite_replica=--overwrite-replica
fi
case "$command" in
  start|stop|status|restart) check_target_args "$@" ;;
  verify) [ $# -eq 0 ] || usage_error "verify takes no arguments, got '$*'" ;;
  failover)
    [ $# -ge 1 ] && [ -n "$1" ] || usage_error "failover needs a SHARD: ./launch.sh failover SHARD [--force [--without-majority]]"
    [ $# -le 3 ] || usage_error "unexpected argument(s) '${*:4}' after SHARD, --force and --without-majority"
    [ $# -lt 2 ] || [ "$2" = --force ] || usage_error "unknown option '$2' (expected --force)"
    [ $# -lt 3 ] || [ "$3" = --without-majority ] || usage_error "unknown option '$3' (expected --without-majority after --force)"
    ;;
  -h|--help|help) usage; exit 0 ;;
  *) usage_error "unknown command '$command'" ;;
esac
check_seconds KV_START_WAIT_S "$start_wait_s"
check_seconds KV_STOP_WAIT_S "$stop_wait_s"
start_wait_s=$((10#$start_wait_s))
stop_wait_s=$((10#$stop_wait_s))
# stop without a shard needs only the PID files, so a cluster can be stopped after its config has gone.
if [ "$command" != stop ] || [ $# -gt 0 ]; then check_config_readable; fi

case "$command" in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  verify) cmd_verify ;;
  failover) cmd_failover "$@" ;;
  restart) cmd_stop "$@" && cmd_start "$@" ;;
esac
