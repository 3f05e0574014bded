#!/usr/bin/env bash
# A real single-node Slurm (22.05, Debian packages) on localhost for dse's integration tests and CI.
#
#   scripts/slurm-local.sh start    install if needed, configure, start, wait for an idle node
#   scripts/slurm-local.sh stop     stop only the daemons this script started (pid files)
#   scripts/slurm-local.sh status   daemons + sinfo; exit 0 when the node is usable
#
# Why each setting: docs/reference/local-slurm.md (measured on this kind of machine).
# Accounting (MariaDB + slurmdbd) is not optional: submitit reads job states only through sacct.
# State lives in $DSE_SLURM_DIR (default /var/tmp/dse-slurm); /etc/slurm/{slurm,gres,cgroup}.conf
# become symlinks to it so that sbatch/sinfo/submitit find the cluster without SLURM_CONF.
set -euo pipefail

DIR=${DSE_SLURM_DIR:-/var/tmp/dse-slurm}
CLUSTER=dse-local
PARTITION=debug
NODE=$(hostname -s)
NGPU=8
MIN_CPUS=16 # declared CPUs (config_overrides) so that 8-way parallel tests fit on a 2-core machine
ETC=${DSE_SLURM_ETC:-/etc/slurm} # where Slurm clients look; overridable for the script's own tests
ETC_FILES=(slurm.conf gres.conf cgroup.conf)
CONF=$DIR/conf
RUN=$DIR/run
LOGS=$DIR/log
DB_SOCK=$RUN/mysqld.sock
DBD_PORT=6819
WAIT_S=60
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd) # start order; stop is the reverse

export SLURM_CONF=$CONF/slurm.conf

log() { printf 'slurm-local: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
need_root() { [[ $EUID -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"; }
pidfile() { printf '%s/%s.pid' "$RUN" "$1"; }

# Whether the daemon named $1 runs from our pid file. /proc state, not kill -0: kill -0 succeeds on
# zombies, and PID 1 here may not reap them. The comm check guards against a recycled pid.
alive() {
    local f pid stat rest
    f=$(pidfile "$1")
    pid=$(cat "$f" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    [[ ${rest:0:1} != Z && ${rest:0:1} != X ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

wait_until() { # timeout_s description command...
    local limit=$1 what=$2 end
    shift 2
    end=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
    log "$what"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
db_ok() { mariadb-admin --no-defaults -S "$DB_SOCK" -u root ping >/dev/null 2>&1; }

fail_with_log() { # daemon logfile
    [[ -f $2 ]] && tail -n 15 "$2" >&2
    die "$1 did not start (log: $2)"
}

install_packages() {
    local missing=() p own_policy=0
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    mkdir -p "$LOGS"
    # No init system here: keep the packages' maintainer scripts from starting daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >"$LOGS/apt.log" 2>&1 || rc=$?
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc)); then
        tail -n 20 "$LOGS/apt.log" >&2
        die "package install failed (log: $LOGS/apt.log)"
    fi
}

# Write $1 (mode $2) from stdin only when the content differs; return 0 when it changed.
write_if_changed() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$1"
}

db_password() {
    local f=$CONF/dbpass
    if [[ ! -s $f ]]; then
        (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
    fi
    cat "$f"
}

CHANGED_SLURM=0
CHANGED_DBD=0
# shellcheck disable=SC2015 # "write && CHANGED=1 || true": true only keeps set -e quiet
write_config() {
    local cpus mem_mb i
    mkdir -p "$CONF" "$RUN" "$LOGS" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/gpu"
    cpus=$(nproc)
    ((cpus >= MIN_CPUS)) || cpus=$MIN_CPUS
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # Fake GPUs: Slurm rejects plain files and drops count-only lines, but takes char devices.
    for ((i = 0; i < NGPU; i++)); do ln -sfn /dev/null "$DIR/gpu/nvidia$i"; done

    write_if_changed "$CONF/slurm.conf" 644 <<EOF && CHANGED_SLURM=1 || true
# Written by scripts/slurm-local.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
KillWait=5
OverTimeLimit=0
InactiveLimit=0
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$NGPU State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

    {
        echo "AutoDetect=off"
        for ((i = 0; i < NGPU; i++)); do echo "NodeName=$NODE Name=gpu File=$DIR/gpu/nvidia$i"; done
    } | write_if_changed "$CONF/gres.conf" 644 && CHANGED_SLURM=1 || true

    # slurmd always loads a cgroup plugin; autodetect picks v2, which needs systemd/dbus.
    write_if_changed "$CONF/cgroup.conf" 644 <<<"CgroupPlugin=cgroup/v1" && CHANGED_SLURM=1 || true

    write_if_changed "$CONF/slurmdbd.conf" 600 <<EOF && CHANGED_DBD=1 || true
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db
EOF
    chown root:root "$CONF/slurmdbd.conf"
    chmod 600 "$CONF/slurmdbd.conf"

    # Clients (sbatch, sinfo, sacct, submitit) read /etc/slurm/slurm.conf unless SLURM_CONF is set.
    if [[ ! -d $ETC ]]; then
        mkdir -p "$ETC"
        touch "$DIR/.created-etc" # stop removes the folder again when it is empty
    fi
    local f target
    for f in "${ETC_FILES[@]}"; do
        if [[ -L $ETC/$f ]]; then
            target=$(readlink "$ETC/$f")
            [[ $target == "$CONF/$f" ]] ||
                log "taking over $ETC/$f: it linked to $target (left by an earlier slurm-local.sh)"
        elif [[ -e $ETC/$f ]]; then
            if grep -q "^# Written by scripts/slurm-local.sh" "$ETC/$f" 2>/dev/null; then
                log "taking over $ETC/$f: a copy this script wrote earlier"
            else
                die "$ETC/$f exists and was not written by this script; move it away first"
            fi
        fi
        ln -sfn "$CONF/$f" "$ETC/$f"
    done
}

# Undo what start did to /etc/slurm: our links go, and the folder too when start created it and it is
# empty, so later Slurm clients on this machine do not talk to a stopped cluster.
unlink_etc() {
    local f
    for f in "${ETC_FILES[@]}"; do
        if [[ -L $ETC/$f && $(readlink "$ETC/$f") == "$CONF/$f" ]]; then rm -f "$ETC/$f"; fi
    done
    if [[ -f $DIR/.created-etc ]]; then
        rmdir "$ETC" 2>/dev/null && rm -f "$DIR/.created-etc"
    fi
    return 0
}

start_munged() {
    if alive munged; then return; fi
    if munge_ok; then
        log "munged: using the one already running"
        return
    fi
    [[ -s /etc/munge/munge.key ]] || {
        log "munged: creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    rm -f "$(pidfile munged)"
    # --force recovers from a stale lock or socket left by a killed munged.
    runuser -u munge -- munged --force >"$LOGS/munged.out" 2>&1 9>&- || fail_with_log munged "$LOGS/munged.out"
    # munged writes its pid to /run/munge; keep our own copy with the others.
    wait_until 10 "munged: started" munge_ok || fail_with_log munged /var/log/munge/munged.log
    cp /run/munge/munged.pid "$(pidfile munged)"
}

start_mariadb() {
    local pass
    pass=$(db_password)
    if ! alive mariadbd; then
        if [[ ! -d $DIR/mysql/mysql ]]; then
            log "mariadb: initialising $DIR/mysql"
            mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root \
                --auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 ||
                fail_with_log mariadb-install-db "$LOGS/mariadb-install.log"
        fi
        rm -f "$(pidfile mariadbd)"
        # MariaDB does not daemonize itself; socket only, no TCP.
        setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DB_SOCK" \
            --pid-file="$(pidfile mariadbd)" --skip-networking --log-error="$LOGS/mariadb.log" \
            </dev/null >/dev/null 2>&1 9>&- &
        wait_until 30 "mariadb: started" db_ok || fail_with_log mariadbd "$LOGS/mariadb.log"
        chmod 644 "$(pidfile mariadbd)" # mariadbd writes it 660; status works without root
    fi
    # ALTER as well as CREATE: a stale password makes slurmdbd retry silently every 5 s.
    mariadb --no-defaults -S "$DB_SOCK" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurm_daemon() { # name log [args...]
    local name=$1 logfile=$2
    shift 2
    rm -f "$(pidfile "$name")"
    # The daemons fork; the pid file (from slurm.conf/slurmdbd.conf) names the real one.
    # MYSQL_UNIX_PORT points slurmdbd's client library at our socket.
    MYSQL_UNIX_PORT=$DB_SOCK "$name" "$@" >>"$LOGS/$name.out" 2>&1 9>&- || fail_with_log "$name" "$logfile"
    wait_until 10 "$name: started" alive "$name" || fail_with_log "$name" "$logfile"
}

stop_daemon() { # name
    local name=$1 pid
    alive "$name" || return 0
    pid=$(<"$(pidfile "$name")")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 30 "$name: stopped (pid $pid)" eval "! alive $name"; then
        log "$name: still running after 30 s, killing pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 "$name: killed" eval "! alive $name" || true
    fi
    rm -f "$(pidfile "$name")"
}

# Node state from scontrol: sets NODE_STATE and NODE_SLURMD_START (epoch seconds, 0 if unknown).
read_node() {
    local line t
    NODE_STATE=""
    NODE_SLURMD_START=0
    line=$(scontrol -o show node "$NODE" 2>/dev/null) || return 1
    [[ $line =~ (^| )State=([^ ]+) ]] && NODE_STATE=${BASH_REMATCH[2]}
    if [[ $line =~ SlurmdStartTime=([0-9T:-]+) ]]; then
        t=$(date -d "${BASH_REMATCH[1]}" +%s 2>/dev/null) && NODE_SLURMD_START=$t
    fi
    return 0
}

node_usable() { [[ $NODE_STATE =~ ^(IDLE|MIXED|ALLOCATED)(\+COMPLETING)?$ ]]; }

# Bounded wait until slurmd has really registered (not state restored from a previous run) and the
# node can take jobs; resumes a node left DRAIN/INVAL/DOWN once.
wait_node() { # slurmd_started_at (epoch; 0 = slurmd was already running)
    local since=$1 end=$((SECONDS + WAIT_S)) resumed=0
    while ((SECONDS < end)); do
        alive slurmctld || fail_with_log slurmctld "$LOGS/slurmctld.log"
        alive slurmd || fail_with_log slurmd "$LOGS/slurmd.log"
        if read_node && ((NODE_SLURMD_START >= since)); then
            node_usable && return 0
            if ((!resumed)) && [[ $NODE_STATE =~ DRAIN|INVAL|DOWN|FAIL ]]; then
                log "node $NODE is $NODE_STATE: resuming"
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                resumed=1
            fi
        fi
        sleep 0.3
    done
    tail -n 10 "$LOGS/slurmd.log" >&2 2>/dev/null || true
    die "node $NODE not usable after ${WAIT_S}s (state: ${NODE_STATE:-unknown})"
}

summary() {
    printf 'slurm-local: up cluster=%s node=%s conf=%s partition=%s\n' "$CLUSTER" "$NODE" "$SLURM_CONF" "$PARTITION"
}

all_alive() {
    local d
    for d in "${DAEMONS[@]}"; do
        if [[ $d == munged ]]; then
            munge_ok || return 1 # ours, or one that already ran before us
        else
            alive "$d" || return 1
        fi
    done
}

cmd_start() {
    local t0=$SECONDS slurmd_since=0
    install_packages
    write_config
    if all_alive && ((!CHANGED_SLURM && !CHANGED_DBD)) && read_node && node_usable; then
        log "already running"
        summary
        return 0
    fi
    if ((CHANGED_SLURM)); then
        # A changed node definition needs both daemons to re-read it.
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    ((CHANGED_DBD)) && stop_daemon slurmdbd
    start_munged
    start_mariadb
    if ! alive slurmdbd; then
        start_slurm_daemon slurmdbd "$LOGS/slurmdbd.log"
    fi
    wait_until 30 "slurmdbd: listening on $DBD_PORT" port_open "$DBD_PORT" ||
        fail_with_log slurmdbd "$LOGS/slurmdbd.log"
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        log "registering cluster $CLUSTER in accounting"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    # Never -c: clearing state restarts job ids, and sacct -j would then match old jobs.
    alive slurmctld || start_slurm_daemon slurmctld "$LOGS/slurmctld.log"
    if ! alive slurmd; then
        slurmd_since=$(date +%s)
        start_slurm_daemon slurmd "$LOGS/slurmd.log"
    fi
    wait_node "$slurmd_since"
    log "node $NODE ${NODE_STATE,,} after $((SECONDS - t0)) s"
    summary
}

cmd_stop() {
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
    unlink_etc
    log "stopped"
}

cmd_status() {
    local d
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            printf '%-10s running (pid %s)\n' "$d" "$(<"$(pidfile "$d")")"
        elif [[ $d == munged ]] && munge_ok; then
            printf '%-10s running (not started by this script)\n' "$d"
        else
            printf '%-10s not running\n' "$d"
        fi
    done
    if ! command -v sinfo >/dev/null || ! sinfo 2>/dev/null; then
        echo "sinfo: no answer"
        return 1
    fi
    read_node && node_usable
}

# One start/stop at a time (parallel CI steps, a test runner and a user). Daemons are started with
# fd 9 closed, or they would hold the lock for as long as they run.
lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another slurm-local.sh holds $DIR/.lock"
}

case ${1:-} in
start)
    need_root
    lock
    cmd_start
    ;;
stop)
    need_root
    lock
    cmd_stop
    ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status   (state in \$DSE_SLURM_DIR, default /var/tmp/dse-slurm)" >&2
    exit 2
    ;;
esac
