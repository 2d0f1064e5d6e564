#!/usr/bin/env bash
# Install and start a real SLURM on this machine (munge, slurmctld, three slurmd), for
# the tests marked `slurm`. Needs root and Debian's packages slurm-wlm and munge.
#   bash jobs/slurm-test-cluster.sh          # start (installs the packages if missing)
#   bash jobs/slurm-test-cluster.sh stop     # stop the daemons
# Partition `debug` (the default) is this machine as one node, named as the host is.
# Partition `twonodes` is two more nodes, node1 and node2: two more slurmd daemons on
# this machine (`slurmd -N NAME`, each with its own port, spool, pid and log file;
# Debian's slurmd 22.05 supports it), so jobs and MPI runs span two SLURM nodes.
# Each node declares SLURM_TEST_CPUS CPUs (default 8) whatever the machine has, so tests
# can run more ranks than cores. Partitions `scavenger` and `urgent` are the first node
# again: a job of `urgent` preempts one of `scavenger` (PreemptMode=REQUEUE, GraceTime=30:
# SIGTERM to its tasks, requeued if still running 30 s later); `debug` and `twonodes`
# are never preempted. A running daemon keeps its old configuration: stop, then start.
set -euo pipefail

if [ "${1:-start}" = "stop" ]; then
    pkill -x slurmd || true  # (all three)
    pkill -x slurmctld || true
    pkill -x munged || true
    for _ in $(seq 30); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || exit 0
        sleep 1
    done
    echo "SLURM daemons still running after 30 s" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=${SLURM_TEST_CPUS:-8}
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm /run/munge \
         /var/spool/slurmd-"${host}" /var/spool/slurmd-node1 /var/spool/slurmd-node2 \
         /var/lib/munge /var/log/munge /etc/munge

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mpibench-test
SlurmctldHost=${host}
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmdSpoolDir=/var/spool/slurmd-%n
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
KillWait=10
MinJobAge=3600
InactiveLimit=0
OverTimeLimit=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=${host} CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
NodeName=node1 NodeHostname=${host} NodeAddr=127.0.0.1 Port=6821 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
NodeName=node2 NodeHostname=${host} NodeAddr=127.0.0.1 Port=6822 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP PreemptMode=OFF
PartitionName=scavenger Nodes=${host} MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=urgent Nodes=${host} MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
PartitionName=twonodes Nodes=node1,node2 MaxTime=INFINITE State=UP PreemptMode=OFF
CONF

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -f "^slurmd\$" >/dev/null || slurmd
for node in node1 node2; do
    pgrep -f "^slurmd -N ${node}\$" >/dev/null || slurmd -N "${node}"
done

for _ in $(seq 60); do
    if [ "$(sinfo -h -N -o %T 2>/dev/null | grep -cE "idle|mixed|alloc")" -ge 3 ]; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "SLURM did not come up; logs:" >&2
tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd-*.log >&2 || true
exit 1
