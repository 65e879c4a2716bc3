#!/usr/bin/env bash
# formation.sh - scripted pg_auto_failover formation (monitor + primary +
# synchronous standby) on one Linux host, loopback only, no systemd.
#
# Usage: formation.sh <command> DIR [args]
#   up DIR BASEPORT          create monitor (BASEPORT) + node1 (BASEPORT+1) +
#                            node2 (BASEPORT+2) under a fresh DIR, start the
#                            keepers in the background, wait for
#                            primary/secondary, create role + database
#   uri DIR                  print the multi-host client DSN (read-write)
#   status DIR               pg_autoctl show state + process overview
#   kill-primary DIR [MODE]  crash the current primary. MODE:
#                              node     (default) SIGKILL its pg_autoctl keeper
#                                       (whole process group) AND postgres:
#                                       simulates a machine/node failure
#                              postgres SIGKILL only the postmaster; the keeper
#                                       stays alive (a postgres crash)
#   kill-standby DIR [MODE]  same, for the current secondary
#   wait-failover DIR        wait until the other node is primary/wait_primary
#                            and a write through the DSN succeeds; prints the
#                            time since the kill
#   restore DIR              restart the killed node's keeper (if dead), wait
#                            for primary + secondary again
#   start DIR                (re)start all keepers of an existing DIR (after down)
#   down DIR [--purge]       stop everything, make sure no process is left;
#                            --purge also deletes DIR
#
# Environment (all optional):
#   PAF_PGBIN       PostgreSQL bin dir        (/usr/lib/postgresql/15/bin)
#   PAF_PG_AUTOCTL  pg_autoctl binary         (/usr/bin/pg_autoctl)
#   PAF_OS_USER     OS user running postgres  (postgres)
#   PAF_DB / PAF_USER / PAF_PASSWORD  client database/role/password (idres/idres/idres)
#   PAF_FAST        1 = tune monitor + keepers for fast failover on loopback (1)
#   PAF_TIMEOUT     seconds to wait in up/wait-failover/restore (180)
#   PAF_UNHEALTHY_MS / PAF_DEMOTE_MS / PAF_PARTITION_S  fast-failover knobs
#                   (3000 / 3000 / 2): pgautofailover.node_considered_unhealthy_timeout,
#                   pgautofailover.primary_demote_timeout (monitor), keeper
#                   timeout.network_partition_timeout (keep it < demote timeout)
#   PG_AUTOCTL_DEBUG passed through to pg_autoctl if set
set -Eeuo pipefail

PAF_PGBIN=${PAF_PGBIN:-/usr/lib/postgresql/15/bin}
PAF_PG_AUTOCTL=${PAF_PG_AUTOCTL:-/usr/bin/pg_autoctl}
PAF_OS_USER=${PAF_OS_USER:-postgres}
PAF_DB=${PAF_DB:-idres}
PAF_USER=${PAF_USER:-idres}
PAF_PASSWORD=${PAF_PASSWORD:-idres}
PAF_FAST=${PAF_FAST:-1}
PAF_TIMEOUT=${PAF_TIMEOUT:-180}
PAF_UNHEALTHY_MS=${PAF_UNHEALTHY_MS:-3000}   # only used when PAF_FAST=1
PAF_DEMOTE_MS=${PAF_DEMOTE_MS:-3000}
PAF_PARTITION_S=${PAF_PARTITION_S:-2}
_PAF_DEBUG=${PG_AUTOCTL_DEBUG:-}

# Drop any libpq / pg_autoctl environment of the caller (PGHOST, PGPORT,
# PGDATA, PG_AUTOCTL_MONITOR, ...): everything below is explicit.
while read -r _v; do unset "$_v"; done < <(compgen -e | grep -E '^PG' || true)

PSQL="$PAF_PGBIN/psql"
trap 'rc=$?; log "ERROR: command failed (rc=$rc, line $LINENO): $BASH_COMMAND"' ERR
NODES=(node1 node2)

log()  { printf '%s formation.sh: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
now()  { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

usage() { sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }

# ---------------------------------------------------------------- helpers --

need_dir_arg() {
    [[ -n "${1:-}" ]] || usage
    DIR=$(realpath -m -- "$1")
}

load_env() {
    [[ -f "$DIR/paf.env" ]] || die "$DIR is not a formation directory (no paf.env); run 'up' first"
    # shellcheck disable=SC1091
    source "$DIR/paf.env"
}

# Run a command as the unprivileged OS user, with a clean, self-contained
# environment: pg_autoctl keeps its config/state/pid files under the XDG
# directories, which we point into DIR.
as_pg() {
    local -a envv=(
        PATH="$PAF_PGBIN:/usr/bin:/bin"
        HOME="$DIR/home" LANG=C.UTF-8 LC_ALL=C.UTF-8
        XDG_CONFIG_HOME="$DIR/xdg/config" XDG_DATA_HOME="$DIR/xdg/data"
        XDG_RUNTIME_DIR="$DIR/run"
    )
    [[ -n "$_PAF_DEBUG" ]] && envv+=(PG_AUTOCTL_DEBUG="$_PAF_DEBUG")
    if [[ $(id -u) -eq 0 ]]; then
        setpriv --reuid="$PAF_OS_USER" --regid="$PAF_OS_USER" --init-groups \
            env -i "${envv[@]}" "$@"
    elif [[ $(id -un) == "$PAF_OS_USER" ]]; then
        env -i "${envv[@]}" "$@"
    else
        die "run as root or as $PAF_OS_USER"
    fi
}

autoctl() { as_pg "$PAF_PG_AUTOCTL" "$@"; }

port_of() {   # node name -> port
    case "$1" in
        monitor) echo "$MONITOR_PORT" ;;
        node1) echo $((BASEPORT + 1)) ;;
        node2) echo $((BASEPORT + 2)) ;;
        *) die "unknown node $1" ;;
    esac
}

# psql over TCP to 127.0.0.1 (all pg_hba rules for the internal users are
# 'trust' on loopback). Extra args are passed to psql.
sql_at() {    # port db user sql [psql args...]
    local port=$1 db=$2 user=$3 q=$4; shift 4
    PGCONNECT_TIMEOUT=3 "$PSQL" -X -q -At -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -c "$q" "$@"
}
mon_sql() { sql_at "$MONITOR_PORT" pg_auto_failover autoctl_node "$1"; }

# "name|port|reported|goal|pgisrunning|health" for each data node
node_states() {
    mon_sql "select nodename, nodeport, reportedstate, goalstate,
                    reportedpgisrunning, health
               from pgautofailover.node
              where formationid = 'default' order by nodeid" 2>/dev/null
}

# prints the name of the node that is (reported and assigned) in state $1
node_in_state() {
    node_states | awk -F'|' -v s="$1" '$3==s && $4==s {print $1; exit}'
}

other_node() { [[ $1 == node1 ]] && echo node2 || echo node1; }

pidfile_of() { echo "$DIR/run/pg_autoctl$DIR/$1/pg_autoctl.pid"; }

keeper_pid() {   # prints pid of a live pg_autoctl run for node $1, or nothing
    local f pid
    f=$(pidfile_of "$1")
    [[ -f $f ]] || return 0
    pid=$(head -1 "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "pg_autoctl"; then
        echo "$pid"
    fi
}

postmaster_pid() {
    local f="$DIR/$1/postmaster.pid" pid
    [[ -f $f ]] || return 0
    pid=$(head -1 "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# start "pg_autoctl run" for node $1 in the background, in its own session,
# detached from our stdio; log appended to DIR/logs/$1.log
start_keeper() {
    local n=$1 pid i
    pid=$(keeper_pid "$n")
    if [[ -n $pid ]]; then log "keeper $n already running (pid $pid)"; return 0; fi
    (
        cd "$DIR"
        as_pg setsid "$PAF_PG_AUTOCTL" run --pgdata "$DIR/$n" \
            >>"$DIR/logs/$n.log" 2>&1 </dev/null &
    )
    for i in $(seq 100); do
        pid=$(keeper_pid "$n")
        [[ -n $pid ]] && { log "started keeper $n (pid $pid, log $DIR/logs/$n.log)"; return 0; }
        sleep 0.1
    done
    die "keeper $n did not start, see $DIR/logs/$n.log"
}

wait_port() {   # wait until postgres on port $1 accepts connections
    local port=$1 deadline=$((SECONDS + ${2:-60}))
    until "$PAF_PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; do
        ((SECONDS < deadline)) || die "postgres on port $port not ready"
        sleep 0.2
    done
}

# wait until one node is primary and the other secondary (reported == goal)
wait_stable() {
    local deadline=$((SECONDS + PAF_TIMEOUT)) st
    while :; do
        st=$(node_states || true)
        if [[ $(awk -F'|' '$3=="primary" && $4=="primary"' <<<"$st" | wc -l) -eq 1 &&
              $(awk -F'|' '$3=="secondary" && $4=="secondary"' <<<"$st" | wc -l) -eq 1 ]]; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "current state:"; printf '%s\n' "$st" >&2
            die "timeout (${PAF_TIMEOUT}s) waiting for primary + secondary"
        fi
        sleep 0.2
    done
}

urlencode() {   # percent-encode (ASCII) for use in a URI
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9.~_-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

dsn() {
    # host list as computed by pg_autoctl (current primary first)
    local u hosts
    u=$(autoctl show uri --pgdata "$DIR/monitor" --formation default 2>/dev/null) ||
        die "pg_autoctl show uri failed (is the monitor running?)"
    hosts=${u#postgres://}; hosts=${hosts%%/*}
    [[ -n $hosts ]] || die "could not parse '$u'"
    printf 'postgresql://%s:%s@%s/%s?target_session_attrs=read-write&sslmode=disable\n' \
        "$(urlencode "$PAF_USER")" "$(urlencode "$PAF_PASSWORD")" "$hosts" "$(urlencode "$PAF_DB")"
}

# one INSERT through the multi-host DSN; true if it committed
probe_write() {
    local d
    d=$(dsn)"&connect_timeout=2&application_name=paf_probe"
    timeout 5 "$PSQL" -X -q -At -v ON_ERROR_STOP=1 "$d" \
        -c "insert into paf_probe(note) values ('wait-failover') returning inet_server_port()" 2>/dev/null
}

# ------------------------------------------------------------- commands --

cmd_up() {
    need_dir_arg "${1:-}"
    local baseport=${2:-}
    [[ $baseport =~ ^[0-9]+$ ]] && ((baseport > 1024 && baseport < 65533)) ||
        die "up: BASEPORT must be a number in 1025..65532"
    [[ $(id -u) -eq 0 || $(id -un) == "$PAF_OS_USER" ]] || die "run as root or $PAF_OS_USER"
    id "$PAF_OS_USER" >/dev/null 2>&1 || die "OS user $PAF_OS_USER does not exist"
    [[ -x $PAF_PG_AUTOCTL ]] || die "pg_autoctl not found at $PAF_PG_AUTOCTL"
    [[ -x $PAF_PGBIN/pg_ctl ]] || die "pg_ctl not found in $PAF_PGBIN (set PAF_PGBIN)"
    if [[ -e $DIR ]] && [[ -n $(ls -A "$DIR" 2>/dev/null) ]]; then
        die "$DIR exists and is not empty (up needs a fresh folder)"
    fi
    local p
    for p in "$baseport" $((baseport + 1)) $((baseport + 2)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is already in use"; fi
        [[ -e /var/run/postgresql/.s.PGSQL.$p ]] && die "a unix socket for port $p exists in /var/run/postgresql"
    done

    local t0; t0=$(now)
    mkdir -p "$DIR"
    # every ancestor must be traversable (x) by the postgres user
    if ! as_pg test -x "$DIR"; then
        rmdir "$DIR" 2>/dev/null || true
        die "$PAF_OS_USER cannot traverse to $DIR: chmod o+x (or a+x) its parent directories"
    fi
    # the Debian build of postgres puts its unix socket in /var/run/postgresql;
    # pg_autoctl's keeper uses it (host = /var/run/postgresql). Without
    # systemd/tmpfiles it may be missing after a reboot.
    if [[ ! -d /var/run/postgresql ]]; then
        [[ $(id -u) -eq 0 ]] || die "/var/run/postgresql missing"
        install -d -m 2775 -o "$PAF_OS_USER" -g "$PAF_OS_USER" /var/run/postgresql
    fi
    mkdir -p "$DIR"/{logs,run,home,xdg/config,xdg/data}
    cat >"$DIR/paf.env" <<EOF
BASEPORT=$baseport
MONITOR_PORT=$baseport
EOF
    [[ $(id -u) -eq 0 ]] && chown -R "$PAF_OS_USER:" "$DIR"
    chmod 700 "$DIR"
    load_env

    local ssl=(--no-ssl)
    log "creating monitor on 127.0.0.1:$MONITOR_PORT"
    autoctl create monitor --pgdata "$DIR/monitor" --pgport "$MONITOR_PORT" \
        --hostname 127.0.0.1 --listen 127.0.0.1 --auth trust "${ssl[@]}" \
        >>"$DIR/logs/create-monitor.log" 2>&1 ||
        die "create monitor failed, see $DIR/logs/create-monitor.log"
    start_keeper monitor
    wait_port "$MONITOR_PORT"
    local monuri
    monuri=$(autoctl show uri --pgdata "$DIR/monitor" | awk '$1=="monitor" {print $NF}')
    [[ $monuri == postgres://* ]] || die "could not get monitor URI"
    echo "MONITOR_URI='$monuri'" >>"$DIR/paf.env"

    if [[ $PAF_FAST == 1 ]]; then
        log "tuning monitor for fast failover"
        # health checks every 1s, 1s connect timeout, 1 retry after 0.5s;
        # a node whose keeper has not reported for PAF_UNHEALTHY_MS and fails
        # the health check is unhealthy; a primary that does not answer is
        # presumed demoted after PAF_DEMOTE_MS (keep it > the keepers'
        # network_partition_timeout, after which a cut-off primary demotes
        # itself)
        ((PAF_DEMOTE_MS > PAF_PARTITION_S * 1000)) ||
            die "PAF_DEMOTE_MS must be > PAF_PARTITION_S*1000 (split-brain protection)"
        local g
        for g in health_check_period=1000 health_check_timeout=1000 \
                 health_check_max_retries=1 health_check_retry_delay=500 \
                 node_considered_unhealthy_timeout="$PAF_UNHEALTHY_MS" \
                 primary_demote_timeout="$PAF_DEMOTE_MS"; do
            sql_at "$MONITOR_PORT" pg_auto_failover postgres \
                "alter system set pgautofailover.${g%%=*} = ${g#*=}" >/dev/null
        done
        sql_at "$MONITOR_PORT" pg_auto_failover postgres "select pg_reload_conf()" >/dev/null
    fi

    local n port
    for n in "${NODES[@]}"; do
        port=$(port_of "$n")
        log "creating $n on 127.0.0.1:$port"
        autoctl create postgres --pgdata "$DIR/$n" --pgport "$port" \
            --listen 127.0.0.1 --hostname 127.0.0.1 --name "$n" \
            --monitor "$monuri" --auth trust "${ssl[@]}" \
            >>"$DIR/logs/create-$n.log" 2>&1 ||
            die "create postgres $n failed, see $DIR/logs/create-$n.log"
        if [[ $PAF_FAST == 1 ]]; then
            # a primary that cannot reach monitor nor standby demotes itself
            # after this many seconds (default 20)
            autoctl config set --pgdata "$DIR/$n" timeout.network_partition_timeout "$PAF_PARTITION_S" >/dev/null
        fi
        start_keeper "$n"
        wait_port "$port"
        if [[ $n == node1 ]]; then
            # node2's creation does a pg_basebackup from node1: wait for 'single'
            local deadline=$((SECONDS + PAF_TIMEOUT))
            until node_states | grep -q '^node1|.*|single|single|'; do
                ((SECONDS < deadline)) || die "node1 did not reach 'single'"
                sleep 0.2
            done
        fi
    done
    log "waiting for primary + secondary"
    wait_stable
    local primary; primary=$(node_in_state primary)
    port=$(port_of "$primary")

    log "creating role $PAF_USER and database $PAF_DB on primary $primary"
    local pw=${PAF_PASSWORD//\'/\'\'}
    sql_at "$port" postgres postgres \
        "create role \"$PAF_USER\" login superuser password '$pw'" >/dev/null
    sql_at "$port" postgres postgres "create database \"$PAF_DB\" owner \"$PAF_USER\"" >/dev/null
    sql_at "$port" "$PAF_DB" postgres \
        "create table paf_probe(id bigserial primary key, ts timestamptz default now(), note text)" >/dev/null
    # require the password for the client role over TCP; pg_hba.conf is not
    # replicated, so edit it on both nodes (first matching line wins)
    for n in "${NODES[@]}"; do
        sed -i "1i host all \"$PAF_USER\" 127.0.0.1/32 scram-sha-256 # formation.sh" "$DIR/$n/pg_hba.conf"
        sql_at "$(port_of "$n")" postgres postgres "select pg_reload_conf()" >/dev/null
    done

    if [[ $PAF_FAST == 1 ]]; then
        # a standby retries a lost/refused replication connection every
        # wal_retrieve_retry_interval (5s): while it is disconnected, commits
        # on the sync-rep primary wait. 1s shortens that after a restart.
        for n in "${NODES[@]}"; do
            sql_at "$(port_of "$n")" postgres postgres \
                "alter system set wal_retrieve_retry_interval = '1s'" >/dev/null
            sql_at "$(port_of "$n")" postgres postgres "select pg_reload_conf()" >/dev/null
        done
    fi

    # checks: the DSN works with the password, and a wrong password fails
    local d; d=$(dsn)
    [[ $(timeout 10 "$PSQL" -X -At "$d" -c "select count(*) from paf_probe") == 0 ]] ||
        die "client DSN check failed: $d"
    if PGCONNECT_TIMEOUT=3 "$PSQL" -X -At \
        "postgresql://$(urlencode "$PAF_USER"):wrong-password@127.0.0.1:$port/$(urlencode "$PAF_DB")" -c 'select 1' >/dev/null 2>&1; then
        die "password is not enforced for $PAF_USER"
    fi
    log "up done in $(elapsed "$t0")s"
    autoctl show state --pgdata "$DIR/monitor"
    echo "DSN: $d"
}

cmd_uri() { need_dir_arg "${1:-}"; load_env; dsn; }

cmd_status() {
    need_dir_arg "${1:-}"; load_env
    if [[ -n $(postmaster_pid monitor) ]]; then
        autoctl show state --pgdata "$DIR/monitor" || true
    else
        echo "monitor is not running"
    fi
    local n
    for n in monitor "${NODES[@]}"; do
        printf '%-8s keeper=%-7s postmaster=%s\n' "$n" "$(keeper_pid "$n")" "$(postmaster_pid "$n")"
    done
    [[ -f $DIR/killed ]] && { echo "killed:"; cat "$DIR/killed"; }
    return 0
}

# pids of a node: its keeper's whole process group (pg_autoctl supervisor,
# its postgres/node-active services, the postmaster) + the postmaster's
# children (postgres backends call setsid(), so they have their own pgid)
node_pids() {
    local n=$1 kp pm
    kp=$(keeper_pid "$n"); pm=$(postmaster_pid "$n")
    {
        [[ -n $kp ]] && ps -o pid= -s "$kp" 2>/dev/null
        [[ -n $pm ]] && { echo "$pm"; ps -o pid= --ppid "$pm" 2>/dev/null; }
        true
    } | awk '{print $1}' | sort -un | tr '\n' ' '
}

kill_node() {   # role mode
    local role=$1 mode=${2:-node} n pids pm
    n=$(node_in_state "$role")
    [[ -n $n ]] || { node_states >&2 || true; die "no node is currently in state $role"; }
    [[ -f $DIR/killed ]] && die "a node is already killed ($(head -1 "$DIR/killed")); run restore first"
    pm=$(postmaster_pid "$n")
    [[ -n $pm ]] || die "$n has no running postmaster"
    case "$mode" in
        node)     pids=$(node_pids "$n") ;;
        postgres) pids=$pm ;;
        *) die "kill mode must be 'node' or 'postgres'" ;;
    esac
    local t; t=$(now)
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    printf 'node=%s\nrole=%s\nmode=%s\nts=%s\n' "$n" "$role" "$mode" "$t" >"$DIR/killed"
    log "SIGKILLed $role $n (mode=$mode, pids: $pids)"
    echo "$n"
}

cmd_kill_primary() { need_dir_arg "${1:-}"; load_env; kill_node primary "${2:-node}"; }
cmd_kill_standby() { need_dir_arg "${1:-}"; load_env; kill_node secondary "${2:-node}"; }

read_killed() {
    [[ -f $DIR/killed ]] || die "no killed node recorded in $DIR/killed"
    K_NODE=$(sed -n 's/^node=//p' "$DIR/killed")
    K_ROLE=$(sed -n 's/^role=//p' "$DIR/killed")
    K_MODE=$(sed -n 's/^mode=//p' "$DIR/killed")
    K_TS=$(sed -n 's/^ts=//p' "$DIR/killed")
}

# After a postgres-only kill, the keeper restarts postgres within ~1s; if it
# had already reported "postgres not running" to the monitor, a failover
# starts anyway. Watch the assigned states for a few keeper loops before
# concluding that there is no failover.
settled_restart() {   # killed other
    local end=$((SECONDS + ${PAF_SETTLE_S:-4})) st
    while ((SECONDS < end)); do
        st=$(node_states || true)
        awk -F'|' -v k="$1" -v o="$2" '
            $1==k && $4=="primary" {a=1} $1==o && $4=="secondary" {b=1}
            END {exit !(a && b)}' <<<"$st" || return 1
        sleep 0.2
    done
}

cmd_wait_failover() {
    need_dir_arg "${1:-}"; load_env; read_killed
    [[ $K_ROLE == primary ]] || die "the killed node was not the primary"
    local other st kst deadline=$((SECONDS + PAF_TIMEOUT)) t_state="" port outcome=""
    other=$(other_node "$K_NODE")
    while :; do
        st=$(node_states || true)
        kst=$(awk -F'|' -v n="$K_NODE" '$1==n {print $3 "/" $4}' <<<"$st")
        st=$(awk -F'|' -v n="$other" '$1==n {print $3}' <<<"$st")
        if [[ $st == primary || $st == wait_primary ]]; then
            outcome=failover
        elif [[ $K_MODE == postgres && $kst == primary/primary ]]; then
            # only postgres was killed: the keeper may restart it before the
            # monitor notices, then there is no failover at all
            outcome=restarted
        else
            outcome=""
        fi
        if [[ -n $outcome ]]; then
            [[ -n $t_state ]] || t_state=$(elapsed "$K_TS")
            if port=$(probe_write) && [[ -n $port ]]; then
                local t_write; t_write=$(elapsed "$K_TS")
                if [[ $outcome == failover && $port != "$(port_of "$other")" ]]; then
                    sleep 0.1; continue
                fi
                if [[ $outcome == restarted ]] && ! settled_restart "$K_NODE" "$other"; then
                    log "the monitor started a failover after all (keeper had reported postgres down)"
                    t_state=""
                    continue
                fi
                if [[ $outcome == failover ]]; then
                    log "failover done: $other is $st (monitor after ${t_state}s), write accepted ${t_write}s after the kill"
                else
                    log "no failover: the keeper restarted $K_NODE, still primary; write accepted ${t_write}s after the kill"
                fi
                printf '%s wait-failover killed=%s mode=%s outcome=%s state_s=%s write_s=%s\n' \
                    "$(date -Is)" "$K_NODE" "$K_MODE" "$outcome" "$t_state" "$t_write" >>"$DIR/timings.log"
                echo "$t_write $outcome"
                return 0
            fi
        fi
        ((SECONDS < deadline)) || { node_states >&2 || true; die "timeout waiting for failover to $other"; }
        sleep 0.1
    done
}

cmd_restore() {
    need_dir_arg "${1:-}"; load_env; read_killed
    local t0; t0=$(now)
    if [[ -z $(keeper_pid "$K_NODE") ]]; then
        # the keeper is gone (mode=node): restart it; it finds its node
        # assigned 'demoted', pg_rewinds (or re-basebackups) and rejoins
        start_keeper "$K_NODE"
    else
        log "keeper of $K_NODE is alive, it restarts/rejoins postgres by itself"
    fi
    wait_stable
    local t; t=$(elapsed "$t0")
    log "restore done in ${t}s: $(node_in_state primary) primary, $(node_in_state secondary) secondary"
    printf '%s restore node=%s mode=%s restore_s=%s since_kill_s=%s\n' "$(date -Is)" \
        "$K_NODE" "$K_MODE" "$t" "$(elapsed "$K_TS")" >>"$DIR/timings.log"
    rm -f "$DIR/killed"
    echo "$t"
}

cmd_start() {
    need_dir_arg "${1:-}"; load_env
    start_keeper monitor; wait_port "$MONITOR_PORT"
    local n; for n in "${NODES[@]}"; do start_keeper "$n"; done
    rm -f "$DIR/killed"
    wait_stable
    autoctl show state --pgdata "$DIR/monitor"
}

# processes that belong to this DIR: postgres chdir()s into its PGDATA, and
# we start pg_autoctl with cwd=DIR; also match DIR on the command line
dir_pids() {
    local p cwd
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        if [[ $cwd == "$DIR" || $cwd == "$DIR"/* ]] ||
            tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$DIR/"; then
            echo "${p#/proc/}"
        fi
    done | grep -vx "$$" | tr '\n' ' ' || true
}

cmd_down() {
    need_dir_arg "${1:-}"
    local purge=${2:-}
    [[ -z $purge || $purge == --purge ]] || die "down: unknown option $purge"
    if [[ -f $DIR/paf.env ]]; then
        load_env
        local n pid deadline order=() prim sec
        # freeze the monitor first (no failover decisions while we stop the
        # nodes), then the standby, then the primary
        prim=$(node_in_state primary 2>/dev/null || true)
        sec=$(node_in_state secondary 2>/dev/null || true)
        order=(monitor)
        [[ -n $sec ]] && order+=("$sec")
        [[ -n $prim ]] && order+=("$prim")
        for n in node2 node1; do [[ " ${order[*]} " == *" $n "* ]] || order+=("$n"); done
        for n in "${order[@]}"; do
            pid=$(keeper_pid "$n")
            [[ -n $pid ]] || continue
            log "stopping $n (keeper pid $pid)"
            autoctl stop --pgdata "$DIR/$n" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 30))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                log "$n did not stop in 30s, using --immediate"
                autoctl stop --immediate --pgdata "$DIR/$n" >/dev/null 2>&1 || true
                sleep 2
            fi
        done
    fi
    local left i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        left=$(dir_pids); [[ -z ${left// } ]] && break; sleep 0.5
    done
    if [[ -n ${left// } ]]; then
        log "killing leftover processes: $left"
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        sleep 0.5
        left=$(dir_pids)
        [[ -z ${left// } ]] || die "processes still alive: $left"
    fi
    rm -f "$DIR/killed"
    if [[ $purge == --purge ]]; then rm -rf -- "$DIR"; log "removed $DIR"; fi
    log "down: no process left for $DIR"
}

main() {
    local cmd=${1:-}; shift || true
    case "$cmd" in
        up) cmd_up "$@" ;;
        uri) cmd_uri "$@" ;;
        status) cmd_status "$@" ;;
        kill-primary) cmd_kill_primary "$@" ;;
        kill-standby) cmd_kill_standby "$@" ;;
        wait-failover) cmd_wait_failover "$@" ;;
        restore) cmd_restore "$@" ;;
        start) cmd_start "$@" ;;
        down) cmd_down "$@" ;;
        -h|--help|help) usage 0 ;;
        *) usage ;;
    esac
}

# everything is parsed before main runs: editing this file while a command
# is running (bash reads scripts lazily) cannot break that command
main "$@"; exit $?
