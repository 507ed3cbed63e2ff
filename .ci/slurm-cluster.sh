#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine (as root), for the real-SLURM test and docs/cluster.md.
#   .ci/slurm-cluster.sh install        apt-get install slurm-wlm and munge (Debian/Ubuntu; exit 1 if impossible)
#   .ci/slurm-cluster.sh start DIR      munged + slurmctld + slurmd, state and logs under DIR; prints the
#                                       `export SLURM_CONF=...` line the SLURM commands need
#   .ci/slurm-cluster.sh stop DIR       stop the daemons started with DIR (by their pid files)
# Everything lives under DIR (own munge key and socket, own ports), except one symlink: /etc/slurm/slurm.conf ->
# DIR/slurm.conf (removed by stop). Commands started inside jobs need the config at the default path: the slurm
# plugin's job step drops SLURM_CONF from the environment of its inner `srun`. Refuses to start where a
# slurm.conf already exists (a real installation). No accounting storage (slurmdbd): `sacct` fails, `squeue` works.
set -euo pipefail

cmd=${1:-}
dir=${2:-}

case "$cmd" in
install)
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then exit 0; fi
    command -v apt-get >/dev/null || { echo "no apt-get: cannot install slurm-wlm" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "not root: cannot install slurm-wlm" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
    ;;
start)
    [ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "the test cluster runs its daemons as root" >&2; exit 1; }
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "$tool not found (install slurm-wlm and munge)" >&2; exit 1; }
    done
    if [ -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
        echo "/etc/slurm/slurm.conf exists (a SLURM installation is configured here): not starting a test cluster" >&2
        exit 1
    fi
    mkdir -p "$dir"/{ctld,d,munge}
    chmod 700 "$dir/munge"
    dir=$(cd "$dir" && pwd)
    rm -f "$dir/munge/munge.key"
    mungekey -c -k "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"
    host=$(hostname -s)
    # the node's real size, as slurmd detects it (CPUs, sockets, cores, RealMemory in MB)
    node=$(slurmd -C | head -1)
    # two free TCP ports for slurmctld and slurmd
    read -r p1 p2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
    cat >"$dir/slurm.conf" <<EOF
ClusterName=attnrank-test
SlurmctldHost=$host
SlurmctldPort=$p1
SlurmdPort=$p2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
MpiDefault=none
$node State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p /etc/slurm
    ln -s "$dir/slurm.conf" /etc/slurm/slurm.conf
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 0.5
    done
    echo "SLURM did not come up; logs: $dir/slurmctld.log $dir/slurmd.log" >&2
    sinfo >&2 || true
    tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
    ;;
stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$(cd "$dir" && pwd)/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
    ;;
*)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
