#!/usr/bin/env bash
# Set up a single-node Slurm (munge + slurmctld + slurmd) on this machine, for
# tests/test_slurm.py and for trying connect("slurm") and stengine-batch.sbatch locally.
#
#   sudo bash cluster/slurm/local-slurm.sh        # Debian/Ubuntu, as root; no systemd needed
#
# What it does: installs slurmctld, slurmd, slurm-client and munge with apt-get if they are
# missing; creates a munge key and starts munged; writes /etc/slurm/slurm.conf for this one
# node (partition "debug", the default; CPUs and cores as `slurmd -C` reports them, memory
# minus a margin, no cgroups: proctrack/linuxproc + task/none); starts slurmctld and slurmd;
# waits until `sinfo` shows the node idle.
#
# Idempotent: running it again restarts nothing that is already up and unchanged. It never
# overwrites a slurm.conf it did not write (set STENGINE_SLURM_FORCE=1 to allow that).
# Exits non-zero with a message when it cannot bring the node up.
#
# Daemons run as root (SlurmUser=root) and jobs run as the submitting user: a test and demo
# setup for one machine, not a template for a production cluster. Stop it with
# `scontrol shutdown` (slurmctld and slurmd) and then the munged process.
set -euo pipefail

PARTITION=${STENGINE_SLURM_PARTITION:-debug}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by stengine cluster/slurm/local-slurm.sh"
LOG_DIR=/var/log/slurm

die() { echo "local-slurm: error: $*" >&2; exit 1; }
say() { echo "local-slurm: $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, writes $CONF and starts daemons)"

# --- 1. packages --------------------------------------------------------------------------
have_all() {
  command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged \
    && command -v munge && command -v unmunge
} >/dev/null 2>&1
if ! have_all; then
  command -v apt-get >/dev/null 2>&1 || die "Slurm/munge are not installed and apt-get is missing"
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(slurmctld slurmd slurm-client munge)
  apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${pkgs[@]}" >/dev/null; } \
    || die "apt-get install ${pkgs[*]} failed"
  have_all || die "packages installed but slurmctld/slurmd/sbatch/munged still not on PATH"
fi

# --- 2. munge -----------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
  fi
  if id munge >/dev/null 2>&1; then
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  fi
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
  say "starting munged"
  if id munge >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
    runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
  else
    munged --force || die "munged did not start (see /var/log/munge/munged.log)"
  fi
  for _ in $(seq 20); do munge_ok && break; sleep 0.5; done
  munge_ok || die "munged started but 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"
fi

# --- 3. slurm.conf ------------------------------------------------------------------------
node_line=$(slurmd -C 2>/dev/null | head -n 1) || true
case "$node_line" in
  NodeName=*) ;;
  *) die "'slurmd -C' did not describe this node (got: ${node_line:-nothing})" ;;
esac
node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
[ -n "$node" ] && [ -n "$cpus" ] && [ -n "$mem" ] || die "cannot parse 'slurmd -C': $node_line"
# leave 10 % (at least 512 MiB) to the OS, or slurmd could report less than configured and
# the node would be drained with "Low RealMemory"
margin=$(( mem / 10 > 512 ? mem / 10 : 512 ))
real_mem=$(( mem - margin ))
[ "$real_mem" -gt 256 ] || die "too little memory for a Slurm node: ${mem} MiB"
node_def=$(sed -e "s/ RealMemory=[0-9]*/ RealMemory=$real_mem/" <<<"$node_line")

new_conf=$(cat <<EOF
$MARK
ClusterName=stengine
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( real_mem / cpus ))
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=60
Waittime=0
$node_def NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)

changed=0
if [ -f "$CONF" ] && ! grep -qxF "$MARK" "$CONF" && [ "${STENGINE_SLURM_FORCE:-0}" != 1 ]; then
  die "$CONF exists and was not written by this script; set STENGINE_SLURM_FORCE=1 to replace it"
fi
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
  say "writing $CONF (node $node: $cpus CPUs, RealMemory=$real_mem MiB, partition $PARTITION)"
  mkdir -p "$CONF_DIR"
  printf '%s\n' "$new_conf" > "$CONF"
  changed=1
fi
mkdir -p /var/spool/slurmd /var/spool/slurmctld "$LOG_DIR"

# --- 4. daemons ---------------------------------------------------------------------------
running() { pgrep -x "$1" >/dev/null 2>&1; }
if [ "$changed" = 1 ] && { running slurmctld || running slurmd; }; then
  say "configuration changed: stopping the running slurmctld/slurmd (scontrol shutdown)"
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 30); do { running slurmctld || running slurmd; } || break; sleep 0.5; done
  { running slurmctld || running slurmd; } && die "slurmctld/slurmd did not stop after 'scontrol shutdown'"
fi
if ! running slurmctld; then
  say "starting slurmctld"
  slurmctld || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
fi
for _ in $(seq 30); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.5; done
scontrol ping 2>/dev/null | grep -q "is UP" \
  || { tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true; die "slurmctld does not answer 'scontrol ping'"; }
if ! running slurmd; then
  say "starting slurmd"
  slurmd || die "slurmd did not start; see $LOG_DIR/slurmd.log"
fi

# --- 5. wait for the node -----------------------------------------------------------------
state=""
for i in $(seq 60); do
  state=$(sinfo -h -N -n "$node" -o %t 2>/dev/null | head -n 1)
  case "$state" in
    idle|mix|alloc|comp) break ;;
    down*|drain*|drng*|fail*)
      # e.g. left down by an earlier run: bring it back once slurmd registers
      [ $(( i % 5 )) = 0 ] && scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
case "$state" in
  idle|mix|alloc|comp) ;;
  *)
    tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
    scontrol show node "$node" >&2 || true
    die "node $node is '${state:-unknown}' after 60 s, not idle" ;;
esac
say "ready: node $node is $state in partition $PARTITION ($(sinfo --version))"
